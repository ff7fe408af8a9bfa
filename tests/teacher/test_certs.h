// Test-only TLS material made with the `openssl` command-line tool: a CA, a
// server and a client certificate signed by it, and an unrelated second CA
// with its own client certificate (for "wrong CA is rejected" tests).
// Header-only; needs `openssl` (3.x) on PATH.
#ifndef RETORT_TESTS_TEACHER_TEST_CERTS_H_
#define RETORT_TESTS_TEACHER_TEST_CERTS_H_

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace retort::testing {

// Paths of PEM files. Keys are unencrypted PKCS#8.
struct TestCerts {
  std::string dir;
  std::string ca_cert;
  std::string server_cert;  // SAN IP:127.0.0.1, DNS:localhost; serverAuth
  std::string server_key;
  std::string client_cert;  // clientAuth
  std::string client_key;
  std::string other_ca_cert;      // an unrelated CA
  std::string other_client_cert;  // signed by other_ca_cert
  std::string other_client_key;
};

// Reads a whole file; aborts with a message if it cannot.
inline std::string ReadFileOrDie(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "ReadFileOrDie: cannot open %s\n", path.c_str());
    std::abort();
  }
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

namespace test_certs_internal {

inline std::string ShellQuote(const std::string& s) {
  return absl::StrCat("'", absl::StrReplaceAll(s, {{"'", "'\\''"}}), "'");
}

// Runs one openssl command line (arguments already quoted) with its output
// going to `log`; on failure returns the command and what openssl printed.
inline absl::Status RunOpenssl(const std::string& args, const std::string& log) {
  const std::string command =
      absl::StrCat("openssl ", args, " >", ShellQuote(log), " 2>&1 </dev/null");
  const int rc = std::system(command.c_str());
  if (rc == 0) return absl::OkStatus();
  std::ifstream in(log);
  std::stringstream output;
  output << in.rdbuf();
  return absl::InternalError(
      absl::StrCat("`", command, "` failed (status ", rc, "): ", output.str()));
}

// X.509 v3 extension sections used below.
constexpr char kOpensslConfig[] = R"(# Written by tests/teacher/test_certs.h
[req]
distinguished_name = dn
prompt = no

[dn]
CN = unused

[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer

[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
)";

constexpr int kValidDays = 3650;

}  // namespace test_certs_internal

// Writes the certificates and keys (RSA 2048, valid 10 years from now) into
// `dir`, which must exist. Returns an error with openssl's output on failure.
inline absl::StatusOr<TestCerts> GenerateTestCerts(const std::string& dir) {
  using test_certs_internal::RunOpenssl;
  using test_certs_internal::ShellQuote;
  const std::string config = dir + "/openssl.cnf";
  const std::string log = dir + "/openssl.log";
  {
    std::ofstream out(config);
    out << test_certs_internal::kOpensslConfig;
    if (!out.flush()) return absl::InternalError(absl::StrCat("cannot write ", config));
  }
  const std::string config_arg = absl::StrCat(" -config ", ShellQuote(config));
  const std::string days_arg = absl::StrCat(" -days ", test_certs_internal::kValidDays);

  auto make_ca = [&](const std::string& name, const std::string& subject) {
    return RunOpenssl(absl::StrCat("req -x509 -newkey rsa:2048 -nodes", config_arg,
                                   " -extensions ca_ext", days_arg, " -subj ", ShellQuote(subject),
                                   " -keyout ", ShellQuote(dir + "/" + name + ".key"), " -out ",
                                   ShellQuote(dir + "/" + name + ".pem")),
                      log);
  };
  auto make_leaf = [&](const std::string& name, const std::string& subject, const std::string& ca,
                       const std::string& extensions) -> absl::Status {
    const std::string csr = dir + "/" + name + ".csr";
    absl::Status status = RunOpenssl(
        absl::StrCat("req -new -newkey rsa:2048 -nodes", config_arg, " -subj ", ShellQuote(subject),
                     " -keyout ", ShellQuote(dir + "/" + name + ".key"), " -out ", ShellQuote(csr)),
        log);
    if (!status.ok()) return status;
    return RunOpenssl(
        absl::StrCat(
            "x509 -req -in ", ShellQuote(csr), " -CA ", ShellQuote(dir + "/" + ca + ".pem"),
            " -CAkey ", ShellQuote(dir + "/" + ca + ".key"), " -CAcreateserial -CAserial ",
            ShellQuote(dir + "/" + ca + ".srl"), days_arg, " -extfile ", ShellQuote(config),
            " -extensions ", extensions, " -out ", ShellQuote(dir + "/" + name + ".pem")),
        log);
  };

  absl::Status status = make_ca("ca", "/O=Retort Test/CN=Retort Test CA");
  if (status.ok()) status = make_leaf("server", "/O=Retort Test/CN=localhost", "ca", "server_ext");
  if (status.ok()) status = make_leaf("client", "/O=Retort Test/CN=client", "ca", "client_ext");
  if (status.ok()) status = make_ca("other_ca", "/O=Retort Other/CN=Retort Other CA");
  if (status.ok()) {
    status = make_leaf("other_client", "/O=Retort Other/CN=other client", "other_ca", "client_ext");
  }
  if (!status.ok()) return status;

  TestCerts certs;
  certs.dir = dir;
  certs.ca_cert = dir + "/ca.pem";
  certs.server_cert = dir + "/server.pem";
  certs.server_key = dir + "/server.key";
  certs.client_cert = dir + "/client.pem";
  certs.client_key = dir + "/client.key";
  certs.other_ca_cert = dir + "/other_ca.pem";
  certs.other_client_cert = dir + "/other_client.pem";
  certs.other_client_key = dir + "/other_client.key";
  return certs;
}

}  // namespace retort::testing

#endif  // RETORT_TESTS_TEACHER_TEST_CERTS_H_
