// backoff — retry commands and downloads with exponential backoff and jitter.
//   backoff run [policy] -- CMD ARGS…     retry a command
//   backoff get URL [-o FILE] [policy]    download with retries and resume
//   backoff schedule [policy]             show the waits a policy produces
//   backoff demo                          see it work against a failing local server
//   backoff simulate SCENARIO             contention, failures or overload experiments
#include <iostream>

#include "cli.hpp"

int main(int argc, char** argv) {
  using namespace backoff::cli;
  CLI::App app{"backoff: retry what fails, with exponential backoff and jitter"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "backoff 0.1.0");
  std::vector<subcommand> commands{run_command(app), get_command(app), schedule_command(app), demo_command(app),
                                   simulate_command(app)};
  if (argc > 1 && argv[1][0] != '-') {
    bool known = false;
    for (const auto& c : commands) known = known || c.app->get_name() == argv[1];
    if (!known) {
      std::cerr << "backoff: unknown subcommand '" << argv[1] << "' (choose run, get, schedule, demo or simulate)\n";
      return exit_code::usage;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "backoff: " << e.what() << "\n";
    std::cerr << "Run 'backoff --help' or 'backoff SUBCOMMAND --help' for usage.\n";
    return exit_code::usage;
  }
  for (const auto& c : commands) {
    if (!c.app->parsed()) continue;
    try {
      return c.run();
    } catch (const usage_error& e) {
      std::cerr << "backoff " << c.app->get_name() << ": " << e.what() << "\n";
      return exit_code::usage;
    } catch (const std::invalid_argument& e) {
      std::cerr << "backoff " << c.app->get_name() << ": " << e.what() << "\n";
      return exit_code::usage;
    } catch (const std::exception& e) {
      std::cerr << "backoff " << c.app->get_name() << ": error: " << e.what() << "\n";
      return exit_code::failed;
    }
  }
  return exit_code::usage;
}
