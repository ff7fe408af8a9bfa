#include "client/teacher_channel.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace retort::client {

absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateTeacherChannel(
    const std::string& address, const TeacherChannelOptions& options) {
  const bool tls = !options.tls_ca_path.empty();
  if (!tls && (!options.tls_cert_path.empty() || !options.tls_key_path.empty())) {
    return absl::InvalidArgumentError(
        "a client certificate (--teacher_tls_cert/--teacher_tls_key) needs TLS: give "
        "--teacher_tls_ca too");
  }
  if (options.tls_cert_path.empty() != options.tls_key_path.empty()) {
    return absl::InvalidArgumentError(
        "mutual TLS needs both --teacher_tls_cert and --teacher_tls_key");
  }
  if (!tls && !options.auth_token.empty() && !options.allow_insecure_token) {
    return absl::FailedPreconditionError(
        "the teacher token would travel in the clear: give --teacher_tls_ca, or "
        "--teacher_insecure_token if the network is trusted");
  }
  if (options.keepalive_time < absl::Seconds(5)) {
    return absl::InvalidArgumentError(
        "the keepalive time must be at least 5 s (servers drop clients that ping more often)");
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  grpc::ChannelArguments args;
  if (tls) {
    grpc::SslCredentialsOptions ssl;
    RETORT_ASSIGN_OR_RETURN(ssl.pem_root_certs,
                            ReadFileForFlag("teacher_tls_ca", options.tls_ca_path));
    if (!options.tls_cert_path.empty()) {
      RETORT_ASSIGN_OR_RETURN(ssl.pem_cert_chain,
                              ReadFileForFlag("teacher_tls_cert", options.tls_cert_path));
      RETORT_ASSIGN_OR_RETURN(ssl.pem_private_key,
                              ReadFileForFlag("teacher_tls_key", options.tls_key_path));
    }
    credentials = grpc::SslCredentials(ssl);
    if (!options.tls_server_name.empty()) {
      args.SetSslTargetNameOverride(options.tls_server_name);
    }
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS,
              static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_time)));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
              static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_timeout)));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetMaxReceiveMessageSize(64 << 20);
  // Each client gets its own connection (no sharing between channels).
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address, credentials, args);
}

void AddCallCredentials(const TeacherChannelOptions& options, grpc::ClientContext* context) {
  if (!options.auth_token.empty()) {
    context->AddMetadata("authorization", "Bearer " + options.auth_token);
  }
}

}  // namespace retort::client
