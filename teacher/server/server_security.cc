#include "teacher/server/server_security.h"

#include <grpcpp/security/server_credentials.h>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace retort::teacher {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path, const std::string& flag) {
  RETORT_ASSIGN_OR_RETURN(std::string pem, ReadFileForFlag(flag, path));
  if (pem.find("-----BEGIN") == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": ", path, " is not a PEM file (no -----BEGIN line)"));
  }
  return pem;
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> BuildServerCredentials(
    const ServerSecurityOptions& options) {
  const bool tls = !options.tls_cert_path.empty() || !options.tls_key_path.empty();
  if (tls && (options.tls_cert_path.empty() || options.tls_key_path.empty())) {
    return absl::InvalidArgumentError("TLS needs both --tls_cert and --tls_key");
  }
  if (!tls && !options.tls_client_ca_path.empty()) {
    return absl::InvalidArgumentError(
        "--tls_client_ca (mutual TLS) needs TLS: give --tls_cert and --tls_key too");
  }
  if (!tls && !options.auth_token.empty() && !options.allow_insecure_token) {
    return absl::FailedPreconditionError(
        "a bearer token over plaintext travels in the clear: give --tls_cert and --tls_key, or "
        "--allow_insecure_token if the network is trusted");
  }
  if (!tls) return grpc::InsecureServerCredentials();
  RETORT_ASSIGN_OR_RETURN(std::string cert, ReadPem(options.tls_cert_path, "tls_cert"));
  RETORT_ASSIGN_OR_RETURN(std::string key, ReadPem(options.tls_key_path, "tls_key"));
  const bool mutual = !options.tls_client_ca_path.empty();
  grpc::SslServerCredentialsOptions ssl(
      mutual ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
             : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  if (mutual) {
    RETORT_ASSIGN_OR_RETURN(ssl.pem_root_certs,
                            ReadPem(options.tls_client_ca_path, "tls_client_ca"));
  }
  ssl.pem_key_cert_pairs.push_back({key, cert});
  return grpc::SslServerCredentials(ssl);
}

grpc::Status CheckBearerToken(const grpc::ServerContext& context, const std::string& token) {
  if (token.empty()) return grpc::Status::OK;
  const std::string want = "Bearer " + token;
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "this teacher requires a bearer token (authorization metadata)");
  }
  const grpc::string_ref got = it->second;
  // Constant time in the token's length: no early exit on the first mismatch.
  unsigned char diff = got.size() == want.size() ? 0 : 1;
  for (size_t i = 0; i < want.size(); ++i) {
    const char c = i < got.size() ? got.data()[i] : 0;
    diff |= static_cast<unsigned char>(c ^ want[i]);
  }
  if (diff != 0) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "the bearer token is not valid");
  }
  return grpc::Status::OK;
}

}  // namespace retort::teacher
