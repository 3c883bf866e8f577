// The JSON attempt report written by --report (nlohmann-json).
#pragma once

#include <nlohmann/json.hpp>

#include <fstream>
#include <string>

#include "cli.hpp"

namespace backoff::cli {

inline double seconds(duration d) { return std::chrono::duration<double>(d).count(); }

// Writes `doc` to `path` through a temporary file renamed into place.
// Throws usage_error naming the path on failure.
inline void write_report(const std::string& path, const nlohmann::json& doc) {
  const std::string temp = path + ".tmp";
  {
    std::ofstream out(temp);
    if (!out) throw usage_error("--report: cannot write '" + path + "'");
    out << doc.dump(2) << "\n";
    if (!out) throw usage_error("--report: cannot write '" + path + "'");
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) throw usage_error("--report: cannot write '" + path + "'");
}

}  // namespace backoff::cli
