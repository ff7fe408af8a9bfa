#include "distributed/c10d_communicator.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/torch_status.h"
#include "distributed/c10d_compat.h"

namespace retort::distributed {

struct C10dCommunicator::State {
  Rendezvous rendezvous;
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroup> group;
};

namespace {

constexpr int64_t kFirstBucketBytes = int64_t{1} << 20;  // PyTorch DDP's default

class ReducerSync : public GradientSync {
 public:
  explicit ReducerSync(std::shared_ptr<c10d::Reducer> reducer) : reducer_(std::move(reducer)) {}
  absl::Status PrepareForBackward(const torch::Tensor& output) override {
    return TorchCall("preparing the gradient all-reduce", [&] {
      // The buckets keep PyTorch's initial layout (parameters in reverse
      // order, about the order backward makes their gradients ready) for the
      // whole run; they are not rebuilt after the first backward as DDP does.
      // A rebuild happens at the first step of every process, so a run
      // resumed at step s all-reduced step s in the initial layout and an
      // uninterrupted run in the rebuilt one; with more than two ranks Gloo's
      // ring sums an element in an order that depends on its place in the
      // bucket, and the resumed run drifted in the last bits (found by the
      // chaos soak with 4 ranks; tests/chaos/four_ranks_resume_test.py).
      reducer_->prepare_for_backward({output});
    });
  }

 private:
  std::shared_ptr<c10d::Reducer> reducer_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<C10dCommunicator>> C10dCommunicator::Create(const Options& options) {
  const Rendezvous& r = options.rendezvous;
  auto state = std::make_unique<State>();
  state->rendezvous = r;
  const auto timeout = std::chrono::milliseconds(absl::ToInt64Milliseconds(options.timeout));
  std::string device_host = options.interface_host;
  if (device_host.empty()) {
    absl::StatusOr<std::string> local = GlooDeviceHost(r.master_addr, r.master_port);
    if (!local.ok()) {
      return absl::UnavailableError(
          absl::StrCat("rank ", r.rank, " of ", r.world_size, ": ", local.status().message()));
    }
    device_host = *local;
  }
  absl::Status joined = TorchCall("joining the trainer group", [&] {
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<uint16_t>(r.master_port);
    store_options.isServer = r.rank == 0 && !r.agent_hosts_store;
    store_options.numWorkers = r.world_size;
    // Every rank checks in when we host the store; torchrun's agent keeps
    // its own count.
    store_options.waitWorkers = !r.agent_hosts_store;
    store_options.timeout = timeout;
    // Our keys under their own prefix: a launcher's store holds its own.
    state->store = c10::make_intrusive<c10d::PrefixStore>(
        "retort", c10::make_intrusive<c10d::TCPStore>(r.master_addr, store_options));
    auto group_options = c10d::ProcessGroupGloo::Options::create(timeout);
    const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
    if (options.interface_host.empty() && ifname != nullptr && *ifname != '\0') {
      group_options->devices.push_back(
          c10d::ProcessGroupGloo::createDeviceForInterface(std::string(ifname)));
    } else {
      group_options->devices.push_back(
          c10d::ProcessGroupGloo::createDeviceForHostname(device_host));
    }
    state->group =
        c10d_compat::GlooProcessGroup(state->store, r.rank, r.world_size,
                                      c10::make_intrusive<c10d::ProcessGroupGloo>(
                                          state->store, r.rank, r.world_size, group_options));
  });
  if (!joined.ok()) {
    return absl::UnavailableError(absl::StrCat(
        "rank ", r.rank, " of ", r.world_size, " could not join the group at ", r.master_addr, ":",
        r.master_port, " (", r.source, " rendezvous): ", joined.message()));
  }
  return std::unique_ptr<C10dCommunicator>(new C10dCommunicator(std::move(state)));
}

absl::StatusOr<std::string> GlooDeviceHost(const std::string& master_addr, int master_port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(master_port);
  if (const int error = getaddrinfo(master_addr.c_str(), port.c_str(), &hints, &found);
      error != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot resolve MASTER_ADDR ", master_addr, ": ", gai_strerror(error)));
  }
  std::string last_error = "no address";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    const int fd = socket(a->ai_family, SOCK_DGRAM, 0);
    if (fd < 0) continue;
    sockaddr_storage local{};
    socklen_t length = sizeof(local);
    // connect() on a UDP socket sends nothing; it only picks the route.
    const bool routed = connect(fd, a->ai_addr, a->ai_addrlen) == 0 &&
                        getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) == 0;
    if (!routed) last_error = std::strerror(errno);
    close(fd);
    if (!routed) continue;
    char ip[NI_MAXHOST];
    if (getnameinfo(reinterpret_cast<sockaddr*>(&local), length, ip, sizeof(ip), nullptr, 0,
                    NI_NUMERICHOST) == 0) {
      freeaddrinfo(found);
      return std::string(ip);
    }
  }
  freeaddrinfo(found);
  return absl::UnavailableError(
      absl::StrCat("no route from this host to MASTER_ADDR ", master_addr, ": ", last_error));
}

C10dCommunicator::C10dCommunicator(std::unique_ptr<State> state) : state_(std::move(state)) {}
C10dCommunicator::~C10dCommunicator() = default;

int C10dCommunicator::rank() const { return state_->rendezvous.rank; }
int C10dCommunicator::world_size() const { return state_->rendezvous.world_size; }

absl::Status C10dCommunicator::Broadcast(const std::vector<torch::Tensor>& tensors, int root) {
  return TorchCall("broadcast", [&] {
    torch::NoGradGuard no_grad;
    c10d::BroadcastOptions options;
    options.rootRank = root;
    for (const torch::Tensor& t : tensors) {
      std::vector<at::Tensor> one = {t};
      state_->group->broadcast(one, options)->wait();
    }
  });
}

absl::Status C10dCommunicator::AllReduceMean(const std::vector<torch::Tensor>& tensors) {
  return TorchCall("all-reduce", [&] {
    torch::NoGradGuard no_grad;
    for (const torch::Tensor& t : tensors) {
      std::vector<at::Tensor> one = {t};
      state_->group->allreduce(one)->wait();
      t.div_(world_size());
    }
  });
}

absl::Status C10dCommunicator::Barrier() {
  return TorchCall("barrier", [&] { state_->group->barrier()->wait(); });
}

absl::StatusOr<std::unique_ptr<GradientSync>> C10dCommunicator::CreateGradientSync(
    const std::vector<torch::Tensor>& parameters, int64_t bucket_bytes) {
  std::shared_ptr<c10d::Reducer> reducer;
  RETORT_RETURN_IF_ERROR(TorchCall("building the gradient buckets", [&] {
    const std::vector<bool> dense(parameters.size(), false);
    // As PyTorch's DDP: a small first bucket (the last layers' gradients,
    // ready first) so communication starts early, then buckets of
    // `bucket_bytes`; listed last layer first, the order backward produces
    // them in.
    const int64_t first_bucket = std::min<int64_t>(bucket_bytes, kFirstBucketBytes);
    auto [buckets, limits] = c10d::compute_bucket_assignment_by_size(
        parameters, {static_cast<size_t>(first_bucket), static_cast<size_t>(bucket_bytes)}, dense);
    std::reverse(buckets.begin(), buckets.end());
    std::reverse(limits.begin(), limits.end());
    reducer = c10d_compat::MakeReducer(parameters, buckets, limits, state_->group, bucket_bytes,
                                       first_bucket);
  }));
  return std::unique_ptr<GradientSync>(new ReducerSync(std::move(reducer)));
}

}  // namespace retort::distributed
