#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMCore
import KVMWorkload

// kvmstat-workload: real KVM guests with exactly known exit counts, for kvmstat's tests and
// benchmark. Each vCPU's loop does 2 `out`s and 1 `hlt` per iteration.
//
//   kvmstat-workload [--vms N] [--vcpus N] [--iterations N] [--run | --loop MS]
//                    [--churn MS[:LIFE]] [--io-delay-us US] [-name NAME]
//
// It prints `ready PID THREADS` once its vCPU threads exist, then reads commands on stdin:
//   run        run every vCPU's loop once; answers `done`
//   add N      add N vCPU threads to the first VM; answers `added THREADS`
//   vm N       add N VMs with --vcpus vCPUs each; answers `added THREADS`
//   destroy    destroy the newest VM; answers `destroyed VMS`
//   quit / EOF exit
// With --run it runs once, prints `done` and exits (no stdin). With --loop MS it runs again
// and again, pausing MS milliseconds between rounds, until killed (no stdin). --churn starts a
// thread every MS milliseconds that lives LIFE milliseconds (default MS/2), until we exit.
// --io-delay-us keeps each vCPU busy in userspace US microseconds on every IO exit.

func usage() -> Never {
    try? FileDescriptor(rawValue: 2).writeAll(
        "usage: kvmstat-workload [--vms N] [--vcpus N] [--iterations N] [--run | --loop MS] "
        + "[--churn MS[:LIFE]] [--io-delay-us US] [-name NAME]\n")
    exit(2)
}

// Whoever started us (a test runner) may have blocked signals: SIGTERM must end us.
var noSignals = sigset_t()
sigemptyset(&noSignals)
sigprocmask(SIG_SETMASK, &noSignals, nil)

var vms = 1
var vcpus = 1
var iterations = 1000
var ioDelay = 0
var runOnce = false
var loopPause: Int?
var churn: (interval: Int, lifetime: Int)?
var args = CommandLine.arguments.dropFirst()
while let arg = args.popFirst() {
    switch arg {
    case "--vms": guard let v = args.popFirst().flatMap({ Int($0) }), v >= 0 else { usage() }; vms = v
    case "--vcpus": guard let v = args.popFirst().flatMap({ Int($0) }), v >= 0 else { usage() }; vcpus = v
    case "--iterations":
        guard let v = args.popFirst().flatMap({ Int($0) }), v >= 0 else { usage() }; iterations = v
    case "--run": runOnce = true
    case "--io-delay-us":
        guard let v = args.popFirst().flatMap({ Int($0) }), v >= 0 else { usage() }; ioDelay = v
    case "--loop": guard let v = args.popFirst().flatMap({ Int($0) }), v >= 0 else { usage() }; loopPause = v
    case "--churn":
        let parts = args.popFirst()?.split(separator: ":").map { Int($0) } ?? []
        guard let interval = parts.first ?? nil, interval > 0, parts.count <= 2 else { usage() }
        guard let lifetime = parts.count == 2 ? parts[1] : interval / 2, lifetime >= 0 else { usage() }
        churn = (interval, lifetime)
    case "-name": guard args.popFirst() != nil else { usage() }  // only shown in /proc/PID/cmdline
    case "--read-tree":
        // Benchmark baseline: the plain loop kvmstat's debugfs source is measured against.
        guard let dir = args.popFirst(), let passes = args.popFirst().flatMap({ Int($0) }) else { usage() }
        ReadTreeBaseline.run(directory: dir, passes: passes)
    case "--fake-churn":
        // Benchmark: VM directories by the thousand coming and going in a fake kvm directory.
        guard let dir = args.popFirst(), let count = args.popFirst().flatMap({ Int($0) }),
              let seconds = args.popFirst().flatMap({ Double($0) }) else { usage() }
        Churn.fakeTree(directory: dir, count: count, seconds: seconds)
    case "--vm-churn":
        // Benchmark: real VMs created and destroyed one after another.
        guard let count = args.popFirst().flatMap({ Int($0) }) else { usage() }
        Churn.realVMs(count: count, iterations: iterations)
    default: usage()
    }
}

/// Unbuffered line output, so a test reading our stdout sees each answer at once.
func say(_ line: String) {
    try? FileDescriptor(rawValue: 1).writeAll(line + "\n")
}

func fail(_ error: WorkloadError) -> Never {
    try? FileDescriptor(rawValue: 2).writeAll("kvmstat-workload: \(error)\n")
    exit(1)
}

let workload = Workload(iterations: iterations, ioDelayMicroseconds: ioDelay)
do { try workload.addVMs(vms, vcpus: vcpus) } catch { fail(error) }
say("ready \(getpid()) \(workload.threadCount)")
if let churn { ThreadChurn.start(interval: churn.interval, lifetime: churn.lifetime) }

if runOnce {
    do { try workload.runAll() } catch { fail(error) }
    say("done")
    exit(0)
}

if let loopPause {
    while true {
        do { try workload.runAll() } catch { fail(error) }
        usleep(UInt32(loopPause) * 1000)
    }
}

while let line = readLine() {
    let words = line.split(separator: " ")
    switch words.first {
    case "run":
        do { try workload.runAll() } catch { fail(error) }
        say("done")
    case "add":
        let n = words.count > 1 ? Int(words[1]) ?? 1 : 1
        guard let vm = workload.vms.first else { say("error no vm"); continue }
        do { try workload.addVCPUs(n, to: vm) } catch { fail(error) }
        say("added \(workload.threadCount)")
    case "vm":
        let n = words.count > 1 ? Int(words[1]) ?? 1 : 1
        do { try workload.addVMs(n, vcpus: vcpus) } catch { fail(error) }
        say("added \(workload.threadCount)")
    case "destroy":
        workload.destroyLastVM()
        say("destroyed \(workload.vms.count)")
    case "quit": exit(0)
    default: say("error unknown command")
    }
}
exit(0)
