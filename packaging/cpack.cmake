# SPDX-License-Identifier: BSL-1.0
# make package: Debian packages by component (CPack), checked by lintian in
# tests/package_test.sh.
#   backoff          the command (stripped), man page, completions
#   libbackoff-dev   headers, static libraries, CMake and pkg-config files
# Debug symbols are left out, as in any Debian binary package; debhelper would
# put them in a -dbgsym package, which CPack's DEB generator cannot make for
# a component package whose files are stripped at install time.
set(BACKOFF_PACKAGE_CONTACT "The backoff developers <maintainers@backoff.dev>" CACHE STRING
    "Maintainer field of the Debian packages")

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME backoff)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "${BACKOFF_PACKAGE_CONTACT}")
set(CPACK_PACKAGE_VENDOR "The backoff developers")
# Each package's first description line is its own summary: CPack prepends
# CPACK_PACKAGE_DESCRIPTION_SUMMARY to every component's description unless it
# is left at CPack's default.
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${CMAKE_PROJECT_NAME} built using CMake")
set(CPACK_RESOURCE_FILE_LICENSE ${PROJECT_SOURCE_DIR}/LICENSE)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_OUTPUT_FILE_PREFIX ${CMAKE_CURRENT_BINARY_DIR}/package)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL cli dev)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "")
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)

set(CPACK_DEBIAN_CLI_PACKAGE_NAME backoff)
set(CPACK_DEBIAN_CLI_PACKAGE_SECTION net)
set(CPACK_DEBIAN_CLI_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_CLI_DESCRIPTION "retry commands and downloads with exponential backoff and jitter
backoff retries what fails over a network. backoff run retries a command;
backoff get downloads files and calls HTTP APIs with truncated exponential
backoff and jitter, obeys Retry-After, resumes broken transfers only under
the same strong validator, verifies checksums and replaces the output file
only when it is complete.")

set(CPACK_DEBIAN_DEV_PACKAGE_NAME libbackoff-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(dev_depends "")
if(BACKOFF_HAVE_CURL)
  list(APPEND dev_depends "libcurl4-openssl-dev | libcurl-dev" "libssl-dev")
endif()
if(BACKOFF_HAVE_CURL_ASYNC OR BACKOFF_HAVE_ASIO)
  list(APPEND dev_depends "libasio-dev")
endif()
if(BACKOFF_HAVE_REDIS)
  list(APPEND dev_depends "libhiredis-dev" "libssl-dev" "pkgconf | pkg-config")
endif()
list(JOIN dev_depends ", " CPACK_DEBIAN_DEV_PACKAGE_DEPENDS)
set(CPACK_DEBIAN_DEV_DESCRIPTION "C++20 library for retries with exponential backoff and jitter
backoff is the library behind the backoff command: schedules, jitter, stop
rules, classifiers, retry budgets, adaptive throttling, a circuit breaker
and per-host backoff in header-only C++20; async retries on Asio; an HTTP
client over libcurl that honours Retry-After and resumes downloads; and
gates shared by a fleet through Redis.

This package holds the headers, the static libraries and the CMake and
pkg-config files.")

include(CPack)
