// SPDX-License-Identifier: BSL-1.0
// testing/https_nginx.hpp — a real nginx serving HTTPS on 127.0.0.1, with a CA
// made for the test (openssl, from Debian's package), for the TLS tests of the
// library and the command.
//
//   backoff::testing::https_nginx tls;                       // certificates, config, nginx started
//   tls.add_file("a.bin", bytes);
//   fetch(tls.url("/a.bin"), tls.ca());                      // trusted only with the test's CA
//   fetch(tls.mtls_url("/a.bin"), tls.ca(), tls.client_cert(), tls.client_key());
//
// Two servers: url() needs only the CA; mtls_url() also asks for a client
// certificate signed by the same CA (nginx's ssl_verify_client on).
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>

#include "wait.hpp"

namespace backoff::testing {

class https_nginx {
 public:
  explicit https_nginx(const std::filesystem::path& dir) : root_(dir) {
    namespace fs = std::filesystem;
    fs::remove_all(root_);
    fs::create_directories(root_ / "www");
    fs::create_directories(root_ / "tmp");
    make_certificates();
    port_ = free_port();
    mtls_port_ = free_port();
    write_config();
    pid_ = ::fork();
    if (pid_ == 0) {
      const std::string conf = (root_ / "nginx.conf").string(), prefix = root_.string() + "/";
      ::execl("/usr/sbin/nginx", "nginx", "-p", prefix.c_str(), "-c", conf.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    const bool up = eventually([&] { return port_open(port_) && port_open(mtls_port_); });
    if (!up) throw std::runtime_error("https_nginx: nginx did not start; see " + (root_ / "error.log").string());
  }
  ~https_nginx() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }
  https_nginx(const https_nginx&) = delete;
  https_nginx& operator=(const https_nginx&) = delete;

  void add_file(const std::string& name, const std::string& bytes) const {
    std::ofstream(root_ / "www" / name, std::ios::binary) << bytes;
  }
  std::string url(const std::string& path) const { return "https://127.0.0.1:" + std::to_string(port_) + path; }
  std::string mtls_url(const std::string& path) const {
    return "https://localhost:" + std::to_string(mtls_port_) + path;
  }
  std::string ca() const { return (root_ / "ca.pem").string(); }
  std::string client_cert() const { return (root_ / "client.pem").string(); }
  std::string client_key() const { return (root_ / "client.key").string(); }
  // A directory that holds the CA under its OpenSSL hash name (for --capath).
  std::string ca_dir() const { return (root_ / "certs").string(); }

 private:
  void sh(const std::string& command) const {
    const std::string full = "cd '" + root_.string() + "' && (" + command + ") > openssl.log 2>&1";
    if (std::system(full.c_str()) != 0)
      throw std::runtime_error("https_nginx: failed: " + command + " (see " + (root_ / "openssl.log").string() + ")");
  }

  void make_certificates() const {
    sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj '/CN=backoff test CA' "
       "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign");
    for (const std::string who : {"server", "client"}) {
      const std::string ext = who == "server" ? "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth"
                                              : "extendedKeyUsage=clientAuth";
      std::ofstream(root_ / (who + ".ext")) << ext << "\n";
      sh("openssl req -newkey rsa:2048 -nodes -keyout " + who + ".key -out " + who + ".csr -subj '/CN=" + who + "'");
      sh("openssl x509 -req -in " + who + ".csr -CA ca.pem -CAkey ca.key -CAcreateserial -out " + who +
         ".pem -days 2 -extfile " + who + ".ext");
    }
    sh("mkdir -p certs && cp ca.pem certs/$(openssl x509 -hash -noout -in ca.pem).0");
  }

  void write_config() const {
    const std::string r = root_.string();
    std::ofstream out(root_ / "nginx.conf");
    out << "daemon off;\nmaster_process off;\nworker_processes 1;\nuser root;\n"
        << "error_log " << r << "/error.log warn;\npid " << r << "/nginx.pid;\n"
        << "events { worker_connections 64; }\n"
        << "http {\n  access_log off;\n  default_type application/octet-stream;\n";
    for (const char* t : {"client_body", "proxy", "fastcgi", "uwsgi", "scgi"}) out << "  " << t << "_temp_path " << r << "/tmp;\n";
    out << "  ssl_certificate " << r << "/server.pem;\n  ssl_certificate_key " << r << "/server.key;\n"
        << "  server { listen 127.0.0.1:" << port_ << " ssl; root " << r << "/www; }\n"
        << "  server { listen 127.0.0.1:" << mtls_port_ << " ssl; root " << r << "/www;\n"
        << "    ssl_client_certificate " << r << "/ca.pem;\n    ssl_verify_client on; }\n"
        << "}\n";
  }

  std::filesystem::path root_;
  int port_ = 0, mtls_port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace backoff::testing
