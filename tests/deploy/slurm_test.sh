#!/bin/bash
# Brings up a Slurm cluster on this one host (munged, slurmctld and two
# slurmd, all in a temporary directory) and runs deploy/slurm/train.sbatch with 2
# tasks and the heterogeneous deploy/slurm/distill.sbatch with 1 teacher task
# and 2 trainer tasks, each on a tiny Fashion-MNIST run. Checks that both jobs
# exit 0, that rank 0 reports "2 ranks (c10d gloo)" and that result.json is
# written. Every daemon is stopped on exit, pass or fail.
#
# Why two slurmd on one host: Slurm starts a heterogeneous job only from the
# backfill scheduler, and backfill plans future starts in whole nodes. While
# it holds component 0 (teachers) to start together with component 1, it
# counts the whole node as taken by component 0 and plans component 1 after
# component 0's time limit: on a single node the het job stays PENDING
# (Resources) forever, however many CPUs are free (seen with Slurm 22.05.8:
# "JobId=N+1 to start at <now + time limit>"). So the host is declared as two
# Slurm nodes, "$(hostname -s)" and "localhost" (both resolve here, so the
# teacher address from SLURM_JOB_NODELIST_HET_GROUP_0 works), each with its
# own slurmd on its own port; the components then land on different nodes.
# The plain train.sbatch job needs only one node.
#
# usage: slurm_test.sh [RETORT_BINARY]      exit 77: skipped
set -uo pipefail

RETORT=$(readlink -f "${1:-/work/main/build/retort}")
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STEP_TIMEOUT=${SLURM_TEST_JOB_TIMEOUT:-180}   # seconds per job

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }

[[ -x "$RETORT" ]] || fail "no retort binary at $RETORT"
[[ -r /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]] ||
  skip "Fashion-MNIST (dataset-fashion-mnist) is not installed"

need_install=0
for tool in slurmctld slurmd munged sbatch scontrol sinfo; do
  command -v "$tool" >/dev/null 2>&1 || need_install=1
done
if ((need_install)); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "installing slurm-wlm and munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -qq >/dev/null &&
      timeout 300 apt-get install -y -qq slurm-wlm munge >/dev/null ||
      skip "apt-get install slurm-wlm munge failed"
  else
    skip "slurm-wlm and munge are not installed (and not root to install them)"
  fi
fi
# The daemons run as root (SlurmUser=root, slurmd must be root to start tasks).
[[ $(id -u) -eq 0 ]] || skip "slurmd must run as root"

T=$(mktemp -d /tmp/retort-slurm.XXXXXX)
chmod 755 "$T"
PIDS=()
cleanup() {
  local rc=$?
  set +e
  if [[ -n "${SLURM_CONF:-}" && -r "${SLURM_CONF}" ]]; then
    # Cancel whatever is left and give slurmd up to 20 s to end its job steps.
    timeout 10 scancel --quiet --user=root >/dev/null 2>&1
    for _ in $(seq 1 20); do
      [[ -z $(timeout 5 squeue -h -t running,completing,pending 2>/dev/null) ]] && break
      sleep 1
    done
  fi
  # Stop in reverse order: slurmd, slurmctld, munged.
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[i]}" 2>/dev/null
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  if ((rc != 0 && rc != 77)); then
    for log in "$T"/slurmctld.log "$T"/slurmd-*.log "$T"/munged.log; do
      [[ -r "$log" ]] && { echo "---- tail $log"; tail -n 30 "$log"; }
    done
  fi
  if [[ -n "${KEEP_SLURM_TEST_DIR:-}" ]]; then echo "kept $T"; else rm -rf "$T"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---- munge, on its own socket and key ----
mkdir -p "$T/munge" "$T/state" "$T/spool" "$T/work"
chmod 755 "$T/munge"
dd if=/dev/urandom of="$T/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$T/munge/munge.key"
MUNGE_SOCKET=$T/munge/munge.socket
munged --foreground --force --socket="$MUNGE_SOCKET" --key-file="$T/munge/munge.key" \
  --pid-file="$T/munge/munged.pid" --seed-file="$T/munge/munged.seed" \
  --log-file="$T/munged.log" &
PIDS+=($!)
for _ in $(seq 1 50); do [[ -S "$MUNGE_SOCKET" ]] && break; sleep 0.2; done
[[ -S "$MUNGE_SOCKET" ]] || fail "munged did not create $MUNGE_SOCKET"

# ---- slurm.conf ----
HOST=$(hostname -s)
HOST2=localhost
[[ "$HOST" != "$HOST2" ]] || skip "hostname -s is localhost: cannot declare two node names"
CTLD_PORT=$(free_port)
SLURMD_PORT=$(free_port)
SLURMD_PORT2=$(free_port)
cat >"$T/slurm.conf" <<CONF
ClusterName=retorttest
SlurmctldHost=$HOST
SlurmctldPort=$CTLD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool/%n
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd-%n.pid
SlurmctldLogFile=$T/slurmctld.log
SlurmdLogFile=$T/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,bf_hetjob_immediate
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=5
InactiveLimit=0
MinJobAge=300
NodeName=$HOST NodeHostname=$HOST NodeAddr=127.0.0.1 Port=$SLURMD_PORT CPUs=4 State=UNKNOWN
NodeName=$HOST2 NodeHostname=$HOST NodeAddr=127.0.0.1 Port=$SLURMD_PORT2 CPUs=4 State=UNKNOWN
PartitionName=debug Nodes=$HOST,$HOST2 Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$T/slurm.conf

slurmctld -D -i -f "$SLURM_CONF" >"$T/slurmctld.stdout" 2>&1 &
PIDS+=($!)
for node in "$HOST" "$HOST2"; do
  mkdir -p "$T/spool/$node"
  slurmd -D -f "$SLURM_CONF" -N "$node" >"$T/slurmd-$node.stdout" 2>&1 &
  PIDS+=($!)
done

want=$(printf '%s=idle\n' "$HOST" "$HOST2" | sort | paste -sd' ' -)
state=""
for _ in $(seq 1 60); do
  state=$(timeout 5 sinfo -h -N -o '%N=%T' 2>/dev/null | sort | paste -sd' ' -)
  [[ "$state" == "$want" ]] && break
  sleep 1
done
if [[ "$state" != "$want" ]]; then
  cat "$T/slurmctld.stdout" "$T"/slurmd-*.stdout
  fail "nodes not idle after 60 s: '${state:-no answer}'"
fi
echo "slurm up: nodes $state (slurmctld port $CTLD_PORT, slurmd ports $SLURMD_PORT $SLURMD_PORT2)"

# sbatch --wait, bounded; prints the job's output; returns sbatch's status.
run_job() {
  local name=$1; shift
  local start=$SECONDS rc
  timeout "$STEP_TIMEOUT" sbatch --wait --chdir="$T/work" --output="$T/work/$name-%j.out" "$@" \
    >"$T/work/$name.sbatch.out" 2>&1
  rc=$?
  echo "---- $name: sbatch --wait exit $rc after $((SECONDS - start)) s"
  cat "$T/work/$name.sbatch.out"
  cat "$T/work/$name"-*.out 2>/dev/null
  if ((rc == 124)); then
    local id
    id=$(grep -o 'Submitted batch job [0-9]*' "$T/work/$name.sbatch.out" | awk '{print $4}')
    [[ -n "$id" ]] && timeout 10 scancel "$id"
  fi
  return "$rc"
}

job_state() {  # job id -> State and ExitCode of every component
  timeout 10 scontrol show job "$1" 2>/dev/null | grep -oE '(JobState|ExitCode)=[^ ]+' | paste -sd' ' -
}

QUICK="--arch=mlp --hidden=32 --epochs=1 --batch_size=50 --train_limit=2000 --validation_size=500"
export RETORT_BIN=$RETORT

# ---- 1. train.sbatch: 2 ranks, hard labels ----
export OUT_DIR=$T/work/train
export RETORT_TRAIN_FLAGS=$QUICK
export MASTER_PORT=$(free_port)
run_job train --ntasks=2 "$SRC/deploy/slurm/train.sbatch" || fail "train.sbatch job failed"
id=$(grep -o 'Submitted batch job [0-9]*' "$T/work/train.sbatch.out" | awk '{print $4}')
echo "train job $id: $(job_state "$id")"
job_state "$id" | grep -q 'JobState=COMPLETED ExitCode=0:0' || fail "train job not COMPLETED 0:0"
grep -q '^0: .*2 ranks (c10d gloo)' "$T/work"/train-*.out || fail "rank 0 did not report 2 ranks (c10d gloo)"
[[ -s "$OUT_DIR/result.json" ]] || fail "no $OUT_DIR/result.json"
echo "train result.json: $(head -c 300 "$OUT_DIR/result.json")"

# ---- 2. distill.sbatch: heterogeneous job, 1 teacher + 2 trainer ranks ----
start=$SECONDS
"$RETORT" train $QUICK --threads=1 --out_dir="$T/work/teacher" >"$T/work/teacher.log" 2>&1 ||
  { cat "$T/work/teacher.log"; fail "teacher checkpoint training failed"; }
echo "teacher checkpoint in $((SECONDS - start)) s: $T/work/teacher/best.pt"
export TEACHER_CHECKPOINT=$T/work/teacher/best.pt
export OUT_DIR=$T/work/distill
export TEACHER_PORT=$(free_port)
export MASTER_PORT=$(free_port)
export RETORT_DISTILL_FLAGS="$QUICK --teacher_wait=60"
export TEACHER_STOP_TIMEOUT=30
run_job distill "$SRC/deploy/slurm/distill.sbatch" || fail "distill.sbatch job failed"
id=$(grep -o 'Submitted batch job [0-9]*' "$T/work/distill.sbatch.out" | awk '{print $4}')
echo "distill job $id: $(job_state "$id")"
[[ $(job_state "$id" | grep -o 'JobState=COMPLETED ExitCode=0:0' | wc -l) -ge 2 ]] ||
  fail "distill het job components not all COMPLETED 0:0"
grep -q '^0: .*2 ranks (c10d gloo)' "$T/work"/distill-*.out || fail "rank 0 did not report 2 ranks (c10d gloo)"
grep -q 'trainers exited with status 0' "$T/work"/distill-*.out || fail "trainers did not exit 0"
[[ -s "$OUT_DIR/result.json" ]] || fail "no $OUT_DIR/result.json"
grep -q 'every accepted request was answered' "$T/work"/distill-*.out ||
  echo "note: the teacher did not report a graceful drain"
echo "distill result.json: $(head -c 300 "$OUT_DIR/result.json")"
echo "PASS"
