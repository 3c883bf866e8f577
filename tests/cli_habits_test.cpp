// SPDX-License-Identifier: BSL-1.0
// `backoff get` with curl's and wget's habits (docs/curl-wget.md): the flags
// people type from memory, each against the real binary and a recording
// server, and TLS options against a real nginx on HTTPS with a CA made here.
#include <sys/stat.h>

#include <cstdlib>

#include "cli_support.hpp"
#include "https_nginx.hpp"

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using namespace cli_test;
using backoff::testing::fault;

namespace {

std::string header_of(const backoff::testing::recorded_request& r, const std::string& name) {
  const auto it = r.headers.find(name);
  return it == r.headers.end() ? std::string() : it->second;
}

}  // namespace

TEST_F(Cli, HeaderTakesOneValueSoTheUrlAfterItIsTheUrl) {
  backoff::testing::fault_server server;
  server.add_file("/a.json", "{\"a\":1}");
  // curl's order: headers first, then the URL; and -o before or after it.
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"get", "-H", "Accept: application/json", "-H", "X-Two: 2", server.url("/a.json"), "-o", "one"},
        std::vector<std::string>{"get", "-o", "two", "--header", "Accept: application/json", "--header=X-Two: 2",
                                 server.url("/a.json")},
        std::vector<std::string>{"get", "--output", "three", "-H", "Accept: application/json", server.url("/a.json"),
                                 "-H", "X-Two: 2"}}) {
    const auto r = cli(args);
    ASSERT_EQ(r.status, 0) << args[2] << ": " << r.err;
  }
  for (const char* name : {"one", "two", "three"}) EXPECT_EQ(slurp(dir / name), "{\"a\":1}") << name;
  const auto requests = server.requests("/a.json");
  ASSERT_EQ(requests.size(), 3u);
  for (const auto& q : requests) {
    EXPECT_EQ(header_of(q, "accept"), "application/json");
    EXPECT_EQ(header_of(q, "x-two"), "2");
  }
}

TEST_F(Cli, UserAgentAndBasicAuthAreSentAndThePasswordIsNotShown) {
  backoff::testing::fault_server server;
  server.add_file("/f", "x");
  server.script("/f", {fault::status(503, "0")});
  const auto r = cli({"get", "-A", "probe/1.0", "-u", "ann:p:ss w0rd", server.url("/f"), "-o", "f", "--initial", "1ms"});
  ASSERT_EQ(r.status, 0) << r.err;
  const auto requests = server.requests("/f");
  ASSERT_EQ(requests.size(), 2u);
  for (const auto& q : requests) {
    EXPECT_EQ(header_of(q, "user-agent"), "probe/1.0");
    EXPECT_EQ(header_of(q, "authorization"), "Basic YW5uOnA6c3MgdzByZA==");  // base64("ann:p:ss w0rd")
  }
  EXPECT_EQ(r.err.find("w0rd"), std::string::npos) << r.err;
  // No password: an error, not a prompt; with -H Authorization too: an error.
  const auto bare = cli({"get", "-u", "ann", server.url("/f")});
  EXPECT_EQ(bare.status, 2);
  EXPECT_NE(bare.err.find("USER:PASSWORD"), std::string::npos) << bare.err;
  const auto both = cli({"get", "-u", "a:b", "-H", "authorization: Bearer t", server.url("/f")});
  EXPECT_EQ(both.status, 2);
  EXPECT_NE(both.err.find("Authorization"), std::string::npos) << both.err;
  EXPECT_EQ(server.hits("/f"), 2u);
}

TEST_F(Cli, UserAgentRefusesALineBreakAndYieldsToAHeader) {
  backoff::testing::fault_server server;
  server.add_file("/f", "x");
  const auto injected = cli({"get", "-A", "ua\r\nX-Evil: 1", server.url("/f"), "-o", "f"});
  EXPECT_EQ(injected.status, 2);
  EXPECT_NE(injected.err.find("--user-agent"), std::string::npos) << injected.err;
  // As in curl, -H 'User-Agent: …' wins over -A; and a value that starts with
  // a dash is a value, not curl's -C.
  ASSERT_EQ(cli({"get", "-A", "from-A", "-H", "User-Agent: from-H", server.url("/f"), "-o", "f"}).status, 0);
  const auto dash = cli({"get", "-A", "-C", server.url("/f"), "-o", "g"});
  ASSERT_EQ(dash.status, 0) << dash.err;
  const auto requests = server.requests("/f");
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(header_of(requests[0], "user-agent"), "from-H");
  EXPECT_EQ(requests[0].headers.count("user-agent"), 1u);
  EXPECT_EQ(header_of(requests[1], "user-agent"), "-C");
}

TEST_F(Cli, CurlAdviceIsOnlyForGetNotForTheCommandsRunRetries) {
  // run's command comes after "--"; a short flag before it is run's to judge,
  // and sh's -c or grep's -v is not curl's -c or -v.
  for (const char* flag : {"-c", "-v"}) {
    const auto r = cli({"run", "-q", "sh", flag, "true"});
    EXPECT_EQ(r.status, 2) << flag;
    EXPECT_EQ(r.err.find("curl's"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("wget's"), std::string::npos) << r.err;
  }
  const auto ok = cli({"run", "-q", "--", "sh", "-c", "echo ran > out"});
  EXPECT_EQ(ok.status, 0) << ok.err;
  EXPECT_EQ(slurp(dir / "out"), "ran\n");
}

TEST_F(Cli, RequestBodiesAsCurlSpellsThem) {
  backoff::testing::fault_server server;
  std::ofstream(dir / "body.txt", std::ios::binary) << "line one\nline two\n";
  struct body_case {
    std::vector<std::string> flags;
    std::string method, body, content_type;
  };
  const std::vector<body_case> cases{
      {{"--data-binary", "@body.txt"}, "POST", "line one\nline two\n", ""},
      {{"-d", "@body.txt"}, "POST", "line one\nline two\n", ""},
      {{"--data-raw", "@body.txt"}, "POST", "@body.txt", ""},
      {{"--json", "{\"k\":1}"}, "POST", "{\"k\":1}", "application/json"},
      {{"--request", "PUT", "--data", "v=1"}, "PUT", "v=1", ""},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args{"get"};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    args.push_back(server.url("/api"));
    const auto r = cli(args);
    ASSERT_EQ(r.status, 0) << c.flags[0] << ": " << r.err;
    EXPECT_EQ(r.out, "ok\n") << c.flags[0];
  }
  const auto requests = server.requests("/api");
  ASSERT_EQ(requests.size(), cases.size());
  for (std::size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(requests[i].method, cases[i].method) << i;
    EXPECT_EQ(requests[i].body, cases[i].body) << i;
    if (!cases[i].content_type.empty()) {
      EXPECT_EQ(header_of(requests[i], "content-type"), cases[i].content_type);
      EXPECT_EQ(header_of(requests[i], "accept"), "application/json");
    }
  }
  // Two bodies: which one would be sent? Neither.
  const auto two = cli({"get", "-d", "a", "--json", "{}", server.url("/api")});
  EXPECT_EQ(two.status, 2);
  EXPECT_NE(two.err.find("give the request body once"), std::string::npos) << two.err;
  EXPECT_EQ(server.hits("/api"), cases.size());
}

TEST_F(Cli, SilentShowErrorFailAndLocationAsInCurlFsSL) {
  backoff::testing::fault_server server;
  server.add_file("/f", "data");
  server.script("/missing", {fault::status(404), fault::status(404)});
  const auto ok = cli({"get", "-fsSL", server.url("/f"), "-o", "f"});
  ASSERT_EQ(ok.status, 0) << ok.err;
  EXPECT_EQ(ok.err, "");
  EXPECT_EQ(slurp(dir / "f"), "data");
  // -s alone: nothing at all, even on failure; -sS: the reason, once.
  const auto silent = cli({"get", "-s", server.url("/missing"), "-o", "m"});
  EXPECT_EQ(silent.status, 4);
  EXPECT_EQ(silent.err, "");
  const auto shown = cli({"get", "-sS", server.url("/missing"), "-o", "m"});
  EXPECT_EQ(shown.status, 4);
  EXPECT_EQ(count_lines(shown.err, "backoff: giving up on"), 1) << shown.err;
  EXPECT_FALSE(fs::exists(dir / "m"));
}

TEST_F(Cli, CompressedAsksForAnEncodingOnlyForApiCalls) {
  backoff::testing::fault_server server;
  server.add_file("/f", std::string(5000, 'z'));
  const auto api = cli({"get", "--compressed", "-X", "GET", server.url("/api")});
  ASSERT_EQ(api.status, 0) << api.err;
  EXPECT_EQ(api.out, "ok\n");
  const auto dl = cli({"get", "--compressed", server.url("/f"), "-o", "f"});
  ASSERT_EQ(dl.status, 0) << dl.err;
  EXPECT_EQ(slurp(dir / "f"), std::string(5000, 'z'));
  ASSERT_EQ(server.requests("/api").size(), 1u);
  EXPECT_NE(header_of(server.requests("/api")[0], "accept-encoding"), "");
  ASSERT_EQ(server.requests("/f").size(), 1u);
  EXPECT_EQ(header_of(server.requests("/f")[0], "accept-encoding"), "");
}

TEST_F(Cli, ForeignFlagsNameWhatToUseInstead) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases{
      {{"get", "--retry", "5", "http://x/"}, "--max-attempts"},
      {{"get", "-C", "-", "http://x/"}, "resuming is automatic"},
      {{"get", "-m", "10", "http://x/"}, "--timeout"},
      {{"get", "--tries=3", "http://x/"}, "--max-attempts"},
      {{"get", "--no-check-certificate", "http://x/"}, "--insecure"},
      {{"get", "-w", "%{http_code}", "http://x/"}, "--report"},
      {{"get", "--limit-rate", "1M", "http://x/"}, "no rate limit"},
  };
  for (const auto& [args, advice] : cases) {
    const auto r = cli(args);
    EXPECT_EQ(r.status, 2) << args[1];
    EXPECT_NE(r.err.find("unknown flag " + args[1].substr(0, args[1].find('='))), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(advice), std::string::npos) << r.err;
  }
  // A value that looks like a short flag is a value: -H's value, -o's '-'.
  const auto value = cli({"get", "-X", "GET", "-H", "X-Dash: -C", "-o", "-", "http://127.0.0.1:1/", "--max-attempts", "1"});
  EXPECT_EQ(value.err.find("unknown flag"), std::string::npos) << value.err;
}

TEST_F(Cli, GetHelpNamesTheCommandAndWhereItDiffersFromCurlAndWget) {
  const auto r = cli({"get", "--help"});
  ASSERT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("Usage: backoff get"), std::string::npos) << r.out.substr(0, 200);
  EXPECT_EQ(r.out.find("backoff-http"), std::string::npos);
  EXPECT_NE(r.out.find("Not curl's -O"), std::string::npos);
  EXPECT_NE(r.out.find("Not wget's -P DIR"), std::string::npos);
}

// TLS against nginx on HTTPS with a CA the test makes.
class CliTls : public Cli {
 protected:
  static inline std::unique_ptr<backoff::testing::https_nginx> tls;
  static void SetUpTestSuite() {
    tls = std::make_unique<backoff::testing::https_nginx>(fs::temp_directory_path() /
                                                          ("backoff-tls-" + std::to_string(::getpid())));
    tls->add_file("f.bin", std::string(300000, 'q'));
  }
  static void TearDownTestSuite() { tls.reset(); }
  void SetUp() override {
    Cli::SetUp();
    for (const char* v : {"CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"}) ::unsetenv(v);
  }
  void TearDown() override {
    for (const char* v : {"CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"}) ::unsetenv(v);
    Cli::TearDown();
  }
};

TEST_F(CliTls, AnUntrustedCertificateIsPermanentAndTheMessageNamesCacert) {
  const auto r = cli({"get", tls->url("/f.bin"), "-o", "f", "--report", "r.json"});
  EXPECT_EQ(r.status, 4) << r.err;
  EXPECT_NE(r.err.find("--cacert FILE"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir / "f"));
  const auto report = nlohmann::json::parse(slurp(dir / "r.json"));
  EXPECT_EQ(report["attempts"].size(), 1u) << "a certificate error is not retried";
  EXPECT_EQ(report["attempts"][0]["transport_error"], "tls");
}

TEST_F(CliTls, CacertCapathAndTheEnvironmentAsCurlReadsIt) {
  const std::string want(300000, 'q');
  auto fetch = [&](std::vector<std::string> extra, const std::string& name) {
    std::vector<std::string> args{"get", tls->url("/f.bin"), "-o", name};
    args.insert(args.end(), extra.begin(), extra.end());
    const auto r = cli(args);
    EXPECT_EQ(r.status, 0) << name << ": " << r.err;
    EXPECT_TRUE(slurp(dir / name) == want) << name;
  };
  fetch({"--cacert", tls->ca()}, "cacert");
  fetch({"--capath", tls->ca_dir()}, "capath");
  ::setenv("CURL_CA_BUNDLE", tls->ca().c_str(), 1);
  fetch({}, "curl_ca_bundle");
  ::unsetenv("CURL_CA_BUNDLE");
  ::setenv("SSL_CERT_FILE", tls->ca().c_str(), 1);
  fetch({}, "ssl_cert_file");
  ::unsetenv("SSL_CERT_FILE");
  ::setenv("SSL_CERT_DIR", tls->ca_dir().c_str(), 1);
  fetch({}, "ssl_cert_dir");
  // A flag wins over the environment: a bundle that does not hold the CA fails.
  ::setenv("CURL_CA_BUNDLE", tls->ca().c_str(), 1);
  const auto wrong = cli({"get", tls->url("/f.bin"), "-o", "wrong", "--cacert", tls->client_cert()});
  EXPECT_EQ(wrong.status, 4) << wrong.err;
  // A CA file that cannot be read is a usage error before anything is sent.
  const auto missing = cli({"get", tls->url("/f.bin"), "--cacert", (dir / "none.pem").string()});
  EXPECT_EQ(missing.status, 2);
  EXPECT_NE(missing.err.find("--cacert: cannot read"), std::string::npos) << missing.err;
  // A device or a FIFO is not a certificate file (a FIFO would hang OpenSSL,
  // /dev/zero fill memory): refused up front.
  ASSERT_EQ(::mkfifo((dir / "fifo.pem").c_str(), 0600), 0);
  for (const std::string& path : {std::string("/dev/null"), (dir / "fifo.pem").string()})
    for (const char* flag : {"--cacert", "--cert"}) {
      const auto r = cli({"get", tls->url("/f.bin"), flag, path});
      EXPECT_EQ(r.status, 2) << flag << " " << path;
      EXPECT_NE(r.err.find("is not a regular file"), std::string::npos) << r.err;
    }
}

TEST_F(CliTls, InsecureDownloadsWithAWarningEveryTime) {
  for (const char* flag : {"-k", "--insecure"}) {
    const auto r = cli({"get", flag, "-q", tls->url("/f.bin"), "-o", "f"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.err.find("warning: --insecure"), std::string::npos) << r.err;
    EXPECT_EQ(slurp(dir / "f").size(), 300000u);
    fs::remove(dir / "f");
  }
}

TEST_F(CliTls, AClientCertificateWhereTheServerAsksForOne) {
  const auto without = cli({"get", "--cacert", tls->ca(), tls->mtls_url("/f.bin"), "-o", "f"});
  EXPECT_NE(without.status, 0);
  EXPECT_FALSE(fs::exists(dir / "f"));
  const auto with = cli({"get", "--cacert", tls->ca(), "--cert", tls->client_cert(), "--key", tls->client_key(),
                         tls->mtls_url("/f.bin"), "-o", "f"});
  EXPECT_EQ(with.status, 0) << with.err;
  EXPECT_EQ(slurp(dir / "f").size(), 300000u);
  // A key that does not belong to the certificate: curl's code 58, named as such.
  const auto bad = cli({"get", "--cacert", tls->ca(), "--cert", tls->client_cert(), "--key", tls->ca(),
                        tls->mtls_url("/f.bin"), "-o", "g"});
  EXPECT_EQ(bad.status, 4) << bad.err;
  EXPECT_NE(bad.err.find("--cert and --key"), std::string::npos) << bad.err;
}
