#include "distributed/rendezvous.h"

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace retort::distributed {
namespace {

using GetEnv = std::function<std::optional<std::string>(const std::string&)>;

absl::StatusOr<int> IntVariable(const GetEnv& getenv, const std::string& name, int fallback,
                                bool required) {
  std::optional<std::string> value = getenv(name);
  if (!value.has_value() || value->empty()) {
    if (required) {
      return absl::InvalidArgumentError(
          absl::StrCat("the launcher set RANK but not ", name,
                       "; torchrun sets MASTER_ADDR, MASTER_PORT, RANK and WORLD_SIZE together"));
    }
    return fallback;
  }
  int parsed = 0;
  if (!absl::SimpleAtoi(*value, &parsed)) {
    return absl::InvalidArgumentError(
        absl::StrCat("environment variable ", name, "='", *value, "' is not a number"));
  }
  return parsed;
}

}  // namespace

std::string FirstSlurmHost(const std::string& nodelist) {
  const size_t comma = nodelist.find(',');
  const size_t bracket = nodelist.find('[');
  if (bracket == std::string::npos || (comma != std::string::npos && comma < bracket)) {
    return nodelist.substr(0, comma);
  }
  // prefix[a-b,c]...: the first number of the range, with its zero padding.
  const std::string prefix = nodelist.substr(0, bracket);
  size_t end = bracket + 1;
  while (end < nodelist.size() && nodelist[end] != '-' && nodelist[end] != ',' &&
         nodelist[end] != ']') {
    ++end;
  }
  return prefix + nodelist.substr(bracket + 1, end - bracket - 1);
}

absl::StatusOr<Rendezvous> Rendezvous::FromEnvironment(const GetEnv& getenv_in) {
  GetEnv getenv = getenv_in;
  if (!getenv) {
    getenv = [](const std::string& name) -> std::optional<std::string> {
      const char* value = std::getenv(name.c_str());
      if (value == nullptr) return std::nullopt;
      return std::string(value);
    };
  }
  Rendezvous r;
  if (getenv("RANK").has_value()) {
    r.source = "torchrun";
    r.agent_hosts_store = getenv("TORCHELASTIC_USE_AGENT_STORE").value_or("") == "True";
    std::optional<std::string> addr = getenv("MASTER_ADDR");
    if (!addr.has_value() || addr->empty()) {
      return absl::InvalidArgumentError(
          "the launcher set RANK but not MASTER_ADDR; torchrun sets MASTER_ADDR, MASTER_PORT, "
          "RANK and WORLD_SIZE together");
    }
    r.master_addr = *addr;
    auto port = IntVariable(getenv, "MASTER_PORT", 0, true);
    if (!port.ok()) return port.status();
    auto rank = IntVariable(getenv, "RANK", 0, true);
    if (!rank.ok()) return rank.status();
    auto world = IntVariable(getenv, "WORLD_SIZE", 0, true);
    if (!world.ok()) return world.status();
    auto local_rank = IntVariable(getenv, "LOCAL_RANK", *rank, false);
    if (!local_rank.ok()) return local_rank.status();
    auto local_world = IntVariable(getenv, "LOCAL_WORLD_SIZE", *world, false);
    if (!local_world.ok()) return local_world.status();
    r.master_port = *port;
    r.rank = *rank;
    r.world_size = *world;
    r.local_rank = *local_rank;
    r.local_world_size = *local_world;
  } else if (getenv("SLURM_PROCID").has_value()) {
    r.source = "slurm";
    auto rank = IntVariable(getenv, "SLURM_PROCID", 0, false);
    if (!rank.ok()) return rank.status();
    auto world = IntVariable(getenv, "SLURM_NTASKS", 1, false);
    if (!world.ok()) return world.status();
    auto local_rank = IntVariable(getenv, "SLURM_LOCALID", 0, false);
    if (!local_rank.ok()) return local_rank.status();
    auto per_node = IntVariable(getenv, "SLURM_NTASKS_PER_NODE", 0, false);
    if (!per_node.ok()) return per_node.status();
    if (*per_node == 0) {
      // SLURM_TASKS_PER_NODE looks like "2(x3)" or "2,1": the first count.
      std::string tasks = getenv("SLURM_TASKS_PER_NODE").value_or("");
      tasks = tasks.substr(0, tasks.find_first_of("(,"));
      int parsed = 0;
      *per_node = absl::SimpleAtoi(tasks, &parsed) ? parsed : *world;
    }
    std::optional<std::string> nodes = getenv("SLURM_STEP_NODELIST");
    if (!nodes.has_value() || nodes->empty()) nodes = getenv("SLURM_JOB_NODELIST");
    std::optional<std::string> addr = getenv("MASTER_ADDR");
    r.master_addr = addr.has_value() && !addr->empty()
                        ? *addr
                        : (nodes.has_value() && !nodes->empty() ? FirstSlurmHost(*nodes)
                                                                : std::string("127.0.0.1"));
    auto port = IntVariable(getenv, "MASTER_PORT", 29500, false);
    if (!port.ok()) return port.status();
    r.master_port = *port;
    r.rank = *rank;
    r.world_size = *world;
    r.local_rank = *local_rank;
    r.local_world_size = *per_node;
  }
  if (r.world_size < 1 || r.rank < 0 || r.rank >= r.world_size) {
    return absl::InvalidArgumentError(absl::StrCat("rank ", r.rank, " is outside world size ",
                                                   r.world_size, " (from ", r.source, ")"));
  }
  if (r.master_port < 1 || r.master_port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("MASTER_PORT ", r.master_port, " is not a port (1..65535)"));
  }
  return r;
}

}  // namespace retort::distributed
