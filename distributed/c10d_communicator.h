// C10dCommunicator: a Communicator over PyTorch's c10d: a TCPStore for the
// rendezvous (rank 0 hosts it at master_addr:master_port) and a Gloo process
// group for the collectives (CPU tensors). Gradient averaging uses c10d's own
// DDP engine, c10d::Reducer: gradients go into buckets that are all-reduced
// asynchronously as they fill during backward, overlapping communication
// with computation.
//
// Every collective has the `timeout`: a rank that died makes the others fail
// with DEADLINE_EXCEEDED or UNAVAILABLE instead of hanging. One thread uses it.
#ifndef RETORT_DISTRIBUTED_C10D_COMMUNICATOR_H_
#define RETORT_DISTRIBUTED_C10D_COMMUNICATOR_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "distributed/communicator.h"
#include "distributed/rendezvous.h"

namespace retort::distributed {

class C10dCommunicator : public Communicator {
 public:
  struct Options {
    Rendezvous rendezvous;
    absl::Duration timeout = absl::Minutes(5);
    // Gloo's device host (a local address or name); empty: the local address
    // the kernel routes master_addr through (GlooDeviceHost), unless
    // GLOO_SOCKET_IFNAME names an interface.
    std::string interface_host = "";
  };

  // Joins the group (blocks until every rank has joined or the timeout).
  // UNAVAILABLE naming the store's address when the rendezvous fails.
  static absl::StatusOr<std::unique_ptr<C10dCommunicator>> Create(const Options& options);
  ~C10dCommunicator() override;

  int rank() const override;
  int world_size() const override;
  absl::Status Broadcast(const std::vector<torch::Tensor>& tensors, int root) override;
  absl::Status AllReduceMean(const std::vector<torch::Tensor>& tensors) override;
  absl::Status Barrier() override;
  absl::StatusOr<std::unique_ptr<GradientSync>> CreateGradientSync(
      const std::vector<torch::Tensor>& parameters, int64_t bucket_bytes) override;

 private:
  struct State;
  explicit C10dCommunicator(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// The local address this host reaches `master_addr` from (the source
// address of a UDP socket connected to master_addr:master_port): each rank's
// own address on the network it shares with rank 0, so ranks on different
// nodes bind Gloo to their own interface (binding every rank to master_addr
// only works where every rank runs on rank 0's host). 127.0.0.1 for a
// loopback master. UNAVAILABLE if the name does not resolve or no route.
absl::StatusOr<std::string> GlooDeviceHost(const std::string& master_addr, int master_port);

}  // namespace retort::distributed

#endif  // RETORT_DISTRIBUTED_C10D_COMMUNICATOR_H_
