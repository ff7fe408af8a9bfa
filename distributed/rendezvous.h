// Where a trainer rank finds its peers: the environment contract of the
// launchers people use.
//
//   torchrun / Kubeflow PyTorchJob: MASTER_ADDR, MASTER_PORT, RANK,
//       WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE
//   Slurm (srun): SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID,
//       SLURM_NTASKS_PER_NODE or SLURM_TASKS_PER_NODE, and the first host of
//       SLURM_STEP_NODELIST / SLURM_JOB_NODELIST (MASTER_ADDR and MASTER_PORT
//       override; the port defaults to 29500)
//   neither: one rank alone
//
// Torch-free.
#ifndef RETORT_DISTRIBUTED_RENDEZVOUS_H_
#define RETORT_DISTRIBUTED_RENDEZVOUS_H_

#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace retort::distributed {

struct Rendezvous {
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string source = "single";  // torchrun, slurm or single
  // torchrun's agent already hosts the TCPStore at master_addr:master_port
  // (TORCHELASTIC_USE_AGENT_STORE=True): rank 0 joins it instead of hosting.
  bool agent_hosts_store = false;

  // Reads the variables through `getenv` (the process environment by
  // default). INVALID_ARGUMENT naming the variable for values that are not
  // numbers, ranks outside [0, world size), or a torchrun contract missing
  // one of its variables.
  static absl::StatusOr<Rendezvous> FromEnvironment(
      const std::function<std::optional<std::string>(const std::string&)>& getenv = {});
};

// The first host of a Slurm node list: "node[03-05,7],gpu1" -> "node03".
std::string FirstSlurmHost(const std::string& nodelist);

}  // namespace retort::distributed

#endif  // RETORT_DISTRIBUTED_RENDEZVOUS_H_
