#!/usr/bin/env bash
# A single-node SLURM on this machine, for tests/test_slurm.py (Debian's Slurm 22.05 and MUNGE).
#
#   .ci/slurm.sh up       install the packages, write the configuration, start munged, slurmctld, slurmd
#   .ci/slurm.sh down     cancel what is left in the queue, stop the three daemons by PID, remove the files
#   .ci/slurm.sh status   exit 0 when the controller answers and the node is up
#
# Run as root. Everything lives in .ci/slurm-state/ (git ignores it through its own .gitignore), except
# /etc/slurm/slurm.conf: the job steps that Snakemake's SLURM executor starts drop SLURM_CONF from their
# environment, so the commands run inside a job read the default path. `up` makes it a symlink to our
# configuration (and refuses to replace a real one); `down` removes it.
#
# The node has this machine's memory, its CPUs (at least LFA_SLURM_MIN_CPUS, default 4) and LFA_SLURM_GPUS
# (default 2) simulated GPUs: character devices made with mknod in the state folder, which SLURM hands out
# as gres, so that each job sees its own CUDA_VISIBLE_DEVICES. A task prolog prints, into every job's log,
# the job id and the GPUs SLURM gave it. The image this runs on blocks service starts, so the daemons are
# started here directly and tracked by their PID files.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
STATE=${LFA_SLURM_STATE:-$ROOT/.ci/slurm-state}
CONF_LINK=/etc/slurm/slurm.conf
N_GPUS=${LFA_SLURM_GPUS:-2}
MIN_CPUS=${LFA_SLURM_MIN_CPUS:-4}
PARTITION=ci
CLUSTER=lfa-ci

CONF=$STATE/etc/slurm.conf
MUNGE_SOCKET=$STATE/munge/socket/munge.socket.2

log() { echo "slurm.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

install_packages() {
  local missing=()
  for bin in munged slurmctld slurmd sbatch; do
    command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
  done
  if ((${#missing[@]})); then
    log "installing slurmctld slurmd slurm-client munge"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      slurmctld slurmd slurm-client munge >/dev/null
  fi
}

pid_alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }
pid_of() { if [[ -s $1 ]]; then cat "$1"; fi; }

write_config() {
  local host cpus mem gres_files node_gres=""
  host=$(hostname -s)
  # The node as slurmd sees it (CPUs, sockets, cores, threads, memory), a little memory left to the system.
  read -r cpus mem < <(slurmd -C | awk '/^NodeName/ {
      for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      print v["CPUs"], v["RealMemory"] }')
  mem=$((mem * 9 / 10))
  # At least MIN_CPUS bookable CPUs, so that two training jobs of 2 CPUs per GPU run at once on a 2-core
  # machine (SLURM only books them: without cgroups nothing confines a job to its CPUs).
  ((cpus >= MIN_CPUS)) || cpus=$MIN_CPUS
  mkdir -p "$STATE"/{etc,run,log,spool/ctld,spool/d,dev,munge/socket}
  echo '*' >"$STATE/.gitignore"
  chmod 755 "$STATE" "$STATE/munge" "$STATE/munge/socket"  # munged needs a world-executable socket folder

  gres_files=""
  if ((N_GPUS > 0)); then
    for ((i = 0; i < N_GPUS; i++)); do
      # gres.conf accepts only character devices; 195 is the NVIDIA major number (no driver behind it).
      [[ -c $STATE/dev/nvidia$i ]] || mknod "$STATE/dev/nvidia$i" c 195 "$i"
    done
    gres_files="$STATE/dev/nvidia[0-$((N_GPUS - 1))]"
    echo "NodeName=$host Name=gpu File=$gres_files" >"$STATE/etc/gres.conf"
    node_gres="Gres=gpu:$N_GPUS"
  else
    : >"$STATE/etc/gres.conf"
  fi

  cat >"$STATE/etc/task_prolog.sh" <<'EOF'
#!/bin/sh
# Lines starting with "print " go to the task's standard output: the job's SLURM log.
echo "print slurm-task job=${SLURM_JOB_ID} step=${SLURM_STEP_ID:-batch} node=${SLURMD_NODENAME} cuda_visible_devices=${CUDA_VISIBLE_DEVICES:-none}"
EOF
  chmod 755 "$STATE/etc/task_prolog.sh"

  cat >"$CONF" <<EOF
# Single-node SLURM for the tests, written by .ci/slurm.sh.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
# The node is what this file says (its CPUs may be more than the machine has).
SlurmdParameters=config_overrides
# No cgroups on this machine: a job's processes are tracked by process group (a process whose parent
# ends stays in its group, so a cancelled job leaves none behind), no task binding.
ProctrackType=proctrack/pgid
TaskPlugin=task/none
TaskProlog=$STATE/etc/task_prolog.sh
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/log/jobcomp.log
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/builtin
ReturnToService=2
# Finished jobs stay visible to squeue for 10 minutes: without slurmdbd (no sacct), squeue is how the
# executor learns that a job ended.
MinJobAge=600
# A cancelled or timed-out job's processes get SIGTERM, then SIGKILL this many seconds later.
KillWait=15
SlurmctldTimeout=30
SlurmdTimeout=60
GresTypes=gpu
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem $node_gres State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

link_conf() {
  mkdir -p "$(dirname "$CONF_LINK")"
  if [[ -L $CONF_LINK ]]; then
    if [[ $(readlink "$CONF_LINK") != "$CONF" ]]; then
      # Another copy's link: stale if what it points to is gone, else that copy's cluster is up.
      [[ ! -e $CONF_LINK ]] || die "$CONF_LINK links to $(readlink "$CONF_LINK"): run 'down' there first"
      ln -sfn "$CONF" "$CONF_LINK"
    fi
  elif [[ -e $CONF_LINK ]]; then
    die "$CONF_LINK exists and is not ours; this script only runs on a machine without a SLURM configuration"
  else
    ln -s "$CONF" "$CONF_LINK"
  fi
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2
  shift 2
  for ((t = 0; t < seconds * 5; t++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  log "timed out waiting for $what"
  return 1
}

node_ready() {
  local state
  state=$(sinfo -h -N -o %T 2>/dev/null | head -1)
  [[ $state == idle* || $state == mixed* || $state == allocated* ]]
}

show_logs() {
  for f in "$STATE"/log/*.log; do
    [[ -f $f ]] || continue
    log "---- $f"
    tail -n 30 "$f" >&2
  done
}

up() {
  [[ $(id -u) == 0 ]] || die "run as root"
  install_packages
  if pid_alive "$(pid_of "$STATE/run/slurmctld.pid")"; then
    log "already up ($STATE)"
    return 0
  fi
  [[ ! -e $STATE ]] || down  # what a run that did not end cleanly left
  # Unix socket paths have at most 107 bytes (slurmd's step sockets, under SlurmdSpoolDir, need ~30 more).
  ((${#STATE} <= 70)) || die "state folder path too long for sockets: $STATE (set LFA_SLURM_STATE)"
  write_config
  link_conf

  # munged: its own key, socket, PID, log and seed files; --force tolerates a checkout in a group- or
  # world-writable folder (munged checks the folders above its files).
  [[ -s $STATE/munge/munge.key ]] || (umask 077 && dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none)
  munged --force --key-file="$STATE/munge/munge.key" --socket="$MUNGE_SOCKET" \
    --pid-file="$STATE/run/munged.pid" --log-file="$STATE/log/munged.log" --seed-file="$STATE/munge/munged.seed"
  wait_for 10 munged munge -S "$MUNGE_SOCKET" -n || { show_logs; die "munged did not start"; }

  export SLURM_CONF=$CONF
  slurmctld -f "$CONF"
  wait_for 30 slurmctld scontrol ping || { show_logs; die "slurmctld did not start"; }
  slurmd -f "$CONF"
  if ! wait_for 60 "the node" node_ready; then
    show_logs
    die "the node did not come up"
  fi
  log "up: partition '$PARTITION', $(sinfo -h -N -o '%N %c CPUs %m MB %G' | head -1)"
}

stop_pid() {  # stop_pid NAME PIDFILE
  local name=$1 pid
  pid=$(pid_of "$2")
  pid_alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((t = 0; t < 100; t++)); do
    pid_alive "$pid" || { log "stopped $name ($pid)"; return 0; }
    sleep 0.1
  done
  log "$name ($pid) ignored SIGTERM; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
}

kill_job_leftovers() {
  # Any process a job of this cluster started that outlived it (its environment names the cluster).
  local env pid
  for env in /proc/[0-9]*/environ; do
    pid=${env#/proc/}
    pid=${pid%/environ}
    [[ $pid != "$$" ]] || continue
    if tr '\0' '\n' 2>/dev/null <"$env" | grep -qx "SLURM_CLUSTER_NAME=$CLUSTER"; then
      log "ending process $pid left by a job: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-100)"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
}

down() {
  if [[ -d $STATE ]] && pid_alive "$(pid_of "$STATE/run/slurmctld.pid")"; then
    export SLURM_CONF=$CONF
    # Jobs still queued or running (a failed test): cancel them and let their steps end.
    if [[ -n $(squeue -h -t PD,R,CG,S -o %i 2>/dev/null) ]]; then
      log "cancelling the jobs still in the queue"
      scancel --partition="$PARTITION" 2>/dev/null || true
      # shellcheck disable=SC2016  # expanded by the inner bash
      wait_for 30 "the jobs to end" bash -c '[[ -z $(squeue -h -t PD,R,CG,S -o %i) ]]' || true
    fi
  fi
  # slurmd first, then the controller, then munged, which both use.
  stop_pid slurmd "$STATE/run/slurmd.pid"
  stop_pid slurmctld "$STATE/run/slurmctld.pid"
  stop_pid munged "$STATE/run/munged.pid"
  kill_job_leftovers
  if [[ -L $CONF_LINK && $(readlink "$CONF_LINK") == "$CONF" ]]; then
    rm -f "$CONF_LINK"
  fi
  rm -rf "$STATE"
  log "down"
}

status() {
  [[ -e $CONF ]] || return 1
  SLURM_CONF=$CONF scontrol ping >/dev/null 2>&1 && SLURM_CONF=$CONF node_ready
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
