#include "client/endpoint_resolver.h"

#include <netdb.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <algorithm>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"

namespace retort::client {
namespace {

constexpr char kDnsScheme[] = "dns:///";

// Splits "host:port" or "[v6]:port"; INVALID_ARGUMENT unless the port is in
// 1..65535 and the host is not empty.
absl::Status SplitHostPort(const std::string& address, const std::string& flag, std::string* host,
                           std::string* port) {
  const size_t colon = address.rfind(':');
  int port_number = 0;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port_number) || port_number < 1 ||
      port_number > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": '", address, "' is not host:port (a port in 1..65535)"));
  }
  *host = address.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  } else if (host->find(':') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--", flag, ": '", address, "': write an IPv6 address in brackets, [addr]:port"));
  }
  *port = address.substr(colon + 1);
  return absl::OkStatus();
}

std::vector<std::string> SortedUnique(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

class StaticResolver : public EndpointResolver {
 public:
  StaticResolver(std::string target, std::vector<std::string> addresses)
      : target_(std::move(target)), addresses_(SortedUnique(std::move(addresses))) {}
  absl::StatusOr<std::vector<std::string>> Resolve() override { return addresses_; }
  bool IsDynamic() const override { return false; }
  std::string Describe() const override { return target_; }

 private:
  const std::string target_;
  const std::vector<std::string> addresses_;
};

class DnsResolver : public EndpointResolver {
 public:
  DnsResolver(std::string target, std::string host, std::string port)
      : target_(std::move(target)), host_(std::move(host)), port_(std::move(port)) {}

  absl::StatusOr<std::vector<std::string>> Resolve() override {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* result = nullptr;
    const int error = getaddrinfo(host_.c_str(), port_.c_str(), &hints, &result);
    if (error != 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot resolve ", target_, ": ", gai_strerror(error)));
    }
    std::vector<std::string> addresses;
    for (addrinfo* a = result; a != nullptr; a = a->ai_next) {
      char ip[NI_MAXHOST];
      if (getnameinfo(a->ai_addr, a->ai_addrlen, ip, sizeof(ip), nullptr, 0, NI_NUMERICHOST) != 0) {
        continue;
      }
      addresses.push_back(a->ai_family == AF_INET6 ? absl::StrCat("[", ip, "]:", port_)
                                                   : absl::StrCat(ip, ":", port_));
    }
    freeaddrinfo(result);
    if (addresses.empty()) {
      return absl::UnavailableError(absl::StrCat(target_, " resolves to no address"));
    }
    return SortedUnique(std::move(addresses));
  }
  bool IsDynamic() const override { return true; }
  std::string Describe() const override { return target_; }

 private:
  const std::string target_, host_, port_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<EndpointResolver>> CreateEndpointResolver(const std::string& target,
                                                                         const std::string& flag) {
  std::string host, port;
  if (absl::StartsWith(target, kDnsScheme)) {
    const std::string name = target.substr(sizeof(kDnsScheme) - 1);
    if (absl::StrContains(name, ',')) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, ": a dns:/// target names one host:port, got '", target, "'"));
    }
    if (absl::Status split = SplitHostPort(name, flag, &host, &port); !split.ok()) return split;
    return std::unique_ptr<EndpointResolver>(new DnsResolver(target, host, port));
  }
  if (absl::StrContains(target, "://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": unknown scheme in '", target,
                     "'; give host:port,host:port or dns:///name:port"));
  }
  std::vector<std::string> addresses;
  for (absl::string_view item : absl::StrSplit(target, ',', absl::SkipWhitespace())) {
    const std::string address(absl::StripAsciiWhitespace(item));
    if (absl::Status split = SplitHostPort(address, flag, &host, &port); !split.ok()) {
      return split;
    }
    addresses.push_back(address);
  }
  if (addresses.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, " is empty; give host:port,host:port or dns:///name:port"));
  }
  return std::unique_ptr<EndpointResolver>(new StaticResolver(target, std::move(addresses)));
}

}  // namespace retort::client
