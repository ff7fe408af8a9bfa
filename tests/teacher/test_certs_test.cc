#include "tests/teacher/test_certs.h"

#include <stdlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace retort::testing {
namespace {

using ::testing::HasSubstr;

struct CommandResult {
  int status;
  std::string output;  // stdout and stderr
};

CommandResult RunCommand(const std::string& command) {
  CommandResult result{-1, ""};
  FILE* pipe = ::popen((command + " 2>&1 </dev/null").c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) result.output.append(buffer, n);
  result.status = ::pclose(pipe);
  return result;
}

class TestCertsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string pattern = ::testing::TempDir() + "/test_certs_test.XXXXXX";
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr) << std::strerror(errno);
    absl::StatusOr<TestCerts> certs = GenerateTestCerts(pattern);
    ASSERT_TRUE(certs.ok()) << certs.status();
    certs_ = new TestCerts(*std::move(certs));
  }
  static void TearDownTestSuite() {
    if (certs_ != nullptr) std::filesystem::remove_all(certs_->dir);
    delete certs_;
    certs_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(certs_, nullptr) << "certificate generation failed"; }

  // `openssl verify` of `cert` against `ca` for `purpose`.
  static CommandResult Verify(const std::string& ca, const std::string& cert,
                              const std::string& purpose) {
    return RunCommand(
        absl::StrCat("openssl verify -purpose ", purpose, " -CAfile '", ca, "' '", cert, "'"));
  }

  static TestCerts* certs_;
};

TestCerts* TestCertsTest::certs_ = nullptr;

TEST_F(TestCertsTest, AllFilesArePem) {
  for (const std::string* path : {&certs_->ca_cert, &certs_->server_cert, &certs_->client_cert,
                                  &certs_->other_ca_cert, &certs_->other_client_cert}) {
    EXPECT_TRUE(absl::StartsWith(ReadFileOrDie(*path), "-----BEGIN CERTIFICATE-----")) << *path;
  }
  for (const std::string* path :
       {&certs_->server_key, &certs_->client_key, &certs_->other_client_key}) {
    EXPECT_TRUE(absl::StartsWith(ReadFileOrDie(*path), "-----BEGIN PRIVATE KEY-----")) << *path;
  }
}

TEST_F(TestCertsTest, ServerCertVerifiesForServerAuth) {
  CommandResult result = Verify(certs_->ca_cert, certs_->server_cert, "sslserver");
  EXPECT_EQ(result.status, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr(": OK"));
}

TEST_F(TestCertsTest, ClientCertVerifiesForClientAuth) {
  CommandResult result = Verify(certs_->ca_cert, certs_->client_cert, "sslclient");
  EXPECT_EQ(result.status, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr(": OK"));
}

TEST_F(TestCertsTest, OtherClientVerifiesOnlyAgainstOtherCa) {
  CommandResult own = Verify(certs_->other_ca_cert, certs_->other_client_cert, "sslclient");
  EXPECT_EQ(own.status, 0) << own.output;
  CommandResult wrong = Verify(certs_->ca_cert, certs_->other_client_cert, "sslclient");
  EXPECT_NE(wrong.status, 0) << wrong.output;
}

TEST_F(TestCertsTest, ClientCertIsNotAServerCert) {
  CommandResult result = Verify(certs_->ca_cert, certs_->client_cert, "sslserver");
  EXPECT_NE(result.status, 0) << result.output;
}

TEST_F(TestCertsTest, ServerCertNamesLocalhost) {
  CommandResult result = RunCommand(
      absl::StrCat("openssl x509 -noout -ext subjectAltName -in '", certs_->server_cert, "'"));
  ASSERT_EQ(result.status, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr("IP Address:127.0.0.1"));
  EXPECT_THAT(result.output, HasSubstr("DNS:localhost"));
}

TEST_F(TestCertsTest, KeysMatchCertificates) {
  auto modulus = [](const std::string& kind, const std::string& path) {
    return RunCommand(absl::StrCat("openssl ", kind, " -noout -modulus -in '", path, "'")).output;
  };
  EXPECT_EQ(modulus("x509", certs_->server_cert), modulus("rsa", certs_->server_key));
  EXPECT_EQ(modulus("x509", certs_->client_cert), modulus("rsa", certs_->client_key));
  EXPECT_EQ(modulus("x509", certs_->other_client_cert), modulus("rsa", certs_->other_client_key));
  EXPECT_NE(modulus("x509", certs_->server_cert), modulus("x509", certs_->client_cert));
}

TEST(GenerateTestCertsTest, MissingDirectoryIsAnError) {
  absl::StatusOr<TestCerts> certs = GenerateTestCerts("/nonexistent/retort_test_certs");
  EXPECT_FALSE(certs.ok());
}

}  // namespace
}  // namespace retort::testing
