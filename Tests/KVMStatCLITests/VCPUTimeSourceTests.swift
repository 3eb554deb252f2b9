import Foundation
import KVMTestSupport
import Testing

/// `--source vcpu` against what the workload is known to do with its time.
@Suite(.serialized, .enabled(if: Kernel.available, realKernelNeeded))
struct VCPUTimeSourceTests {
    static let fields = "^vcpu_(guest|kernel|vmm|wait)_ns$"

    /// Seconds in each state over a log taken while `work` ran: the sum of each CSV column.
    private func seconds(pid: Int32, _ work: () throws -> Void) throws -> [String: Double] {
        let log = try BackgroundKvmstat(["-l", "--source", "vcpu", "--format", "csv", "-s", "0.2", "-p", "\(pid)",
                                         "-f", Self.fields])
        #expect(log.waitForLines(2))
        try work()
        let seen = log.linesSoFar
        #expect(log.waitForLines(seen + 3))
        log.signal(SIGTERM)
        let result = log.finish()
        let rows = result.stdout.split(separator: "\n").map { $0.split(separator: ",").map(String.init) }
        guard let header = rows.first else { return [:] }
        var sums: [String: Double] = [:]
        for row in rows.dropFirst() where row.count == header.count {
            for (name, value) in zip(header.dropFirst(), row.dropFirst()) { sums[name, default: 0] += (Double(value) ?? 0) / 1e9 }
        }
        return sums
    }

    /// 200 µs busy in userspace per IO exit: 1,000 iterations × 2 exits = 0.4 s of VMM time.
    @Test func vmmTimeIsTheWorkloadsKnownTime() throws {
        let workload = try WorkloadProcess(vms: 1, vcpus: 1, iterations: 1000, extra: ["--io-delay-us", "200"])
        let time = try seconds(pid: workload.pid) { try workload.run() }
        let vmm = time["vcpu_vmm_ns"] ?? 0
        #expect(vmm >= 0.3 && vmm <= 1.0, "\(time)")
        #expect(vmm > (time["vcpu_kernel_ns"] ?? 0) + (time["vcpu_guest_ns"] ?? 0), "\(time)")
    }

    /// Exits and nothing else: the host kernel's share is the largest.
    @Test func exitHeavyGuestSpendsItsTimeInTheHostKernel() throws {
        let workload = try WorkloadProcess(vms: 1, vcpus: 1, iterations: 40_000)
        let time = try seconds(pid: workload.pid) { try workload.run() }
        let kernel = time["vcpu_kernel_ns"] ?? 0
        #expect(kernel >= 0.1, "\(time)")
        #expect(kernel > (time["vcpu_vmm_ns"] ?? 0) && kernel > (time["vcpu_guest_ns"] ?? 0), "\(time)")
    }

    /// Two busy vCPUs pinned to one host CPU: each waits about half its wall time.
    @Test func twoVCPUsOnOneCPUEachWaitAboutHalf() throws {
        let workload = try WorkloadProcess(vms: 1, vcpus: 2, iterations: 30_000)
        let pin = try run("/usr/bin/taskset", ["-a", "-p", "-c", "1", "\(workload.pid)"])
        #expect(pin.status == 0, "\(pin.stderr)")
        let time = try seconds(pid: workload.pid) { try workload.run() }
        let running = (time["vcpu_guest_ns"] ?? 0) + (time["vcpu_kernel_ns"] ?? 0) + (time["vcpu_vmm_ns"] ?? 0)
        let waiting = time["vcpu_wait_ns"] ?? 0
        let share = waiting / max(running + waiting, 1e-9)
        // (vCPUs − CPUs) / vCPUs = 0.5, give or take what else ran on that CPU meanwhile.
        #expect(share >= 0.3 && share <= 0.75, "waiting share \(share): \(time)")
    }

    /// Nothing silent: with no VM anywhere (an empty kvm directory), one line on stderr
    /// says why nothing is shown, once, in batch and in a log alike.
    @Test func noVCPUSaysWhyOnce() throws {
        let root = NSTemporaryDirectory() + "kvmstat-vcpu-empty-\(getpid())"
        try FileManager.default.createDirectory(atPath: root + "/kvm", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let batch = try run(kvmstatBinary, ["-1", "--source", "vcpu"], environment: ["KVMSTAT_DEBUGFS": root])
        #expect(batch.status == 0)
        #expect(batch.stderr == "kvmstat: warning: " + "vcpu: no vCPU thread was found (no process has a VM, or its vCPU "
            + "threads are neither named as VMMs name them nor inside KVM_RUN): nothing to show until one is\n",
                "\(batch.stderr)")
        let log = try BackgroundKvmstat(["-l", "--source", "vcpu", "-s", "0.1"], environment: ["KVMSTAT_DEBUGFS": root])
        #expect(log.waitForLines(6))
        log.signal(SIGTERM)
        let result = log.finish()
        #expect(result.stderr.components(separatedBy: "no vCPU thread was found").count == 2, "\(result.stderr)")
    }

    /// A real QEMU's vCPU threads (`CPU 0/KVM`, `CPU 1/KVM`) are found by their names.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/qemu-system-x86_64"), "needs QEMU"))
    func realQEMUsVCPUsFoundByName() throws {
        let guest = try QEMUGuest(outs: 100, vcpus: 2)
        let batch = try run(kvmstatBinary, ["-1", "--source", "vcpu", "-p", "\(guest.pid)", "-f", "^vcpu_kernel_ns"])
        #expect(batch.status == 0, "\(batch.stderr)")
        let lines = batch.stdout.split(separator: "\n")
        for row in ["vcpu_kernel_ns(vcpu0) ", "vcpu_kernel_ns(vcpu1) "] {
            #expect(lines.contains { $0.hasPrefix(row) }, "\(batch.stdout)")
        }
        #expect(!lines.contains { $0.hasPrefix("vcpu_kernel_ns(vcpu2)") })
    }

    /// Prometheus: one family by mode, as node_exporter's CPU seconds, per vCPU and guest;
    /// promtool accepts it.
    @Test func prometheusOneFamilyByMode() throws {
        let workload = try WorkloadProcess(vms: 1, vcpus: 2, iterations: 3000, name: "vcpu-prom-\(getpid())")
        let directory = NSTemporaryDirectory() + "kvmstat-vcpu-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = directory + "/kvm.prom"
        let textfile = try BackgroundKvmstat(["-L", file, "--format", "prometheus", "--source", "vcpu", "-s", "0.2"])
        try workload.run()
        let text = { (try? String(contentsOfFile: file, encoding: .utf8)) ?? "" }
        let series = "kvm_guest_vcpu_seconds_total{guest=\"vcpu-prom-\(getpid())\",pid=\"\(workload.pid)\",mode=\"kernel\",vcpu=\"1\"}"
        #expect(waitUntil(within: 10) { text().contains(series) }, "\(text())")
        for mode in ["guest", "kernel", "vmm", "wait"] {
            #expect(text().contains("kvm_vcpu_seconds_total{mode=\"\(mode)\",vcpu=\"0\"}"), "\(mode)")
        }
        #expect(text().components(separatedBy: "# TYPE kvm_vcpu_seconds_total counter").count == 2)
        textfile.signal(SIGTERM)
        _ = textfile.exit(within: 5)
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/promtool") {
            let check = try run("/bin/sh", ["-c", "/usr/bin/promtool check metrics < '\(file)'"])
            #expect(check.status == 0, "\(check.stdout) \(check.stderr)")
        }
    }

    /// Found by thread name; per vCPU as children; a process without vCPU threads is no guest.
    @Test func vcpusAsChildrenAndNoGuestWithoutThem() throws {
        let workload = try WorkloadProcess(vms: 1, vcpus: 2, iterations: 2000, name: "vcpu-kids-\(getpid())")
        let log = try BackgroundKvmstat(["-l", "--source", "vcpu", "--format", "jsonl", "-s", "0.2", "--by-guest",
                                         "-f", "^vcpu_kernel_ns"])
        #expect(log.waitForLines(2))
        try workload.run()
        let seen = log.linesSoFar
        #expect(log.waitForLines(seen + 2))
        log.signal(SIGTERM)
        let result = log.finish()
        #expect(result.stdout.contains("\"vcpu-kids-\(getpid())\""), "\(result.stdout.suffix(500))")
        let batch = try run(kvmstatBinary, ["-1", "--source", "vcpu", "-p", "\(workload.pid)", "-f", "^vcpu_kernel_ns"])
        let lines = batch.stdout.split(separator: "\n")
        for row in ["vcpu_kernel_ns ", "vcpu_kernel_ns(vcpu0) ", "vcpu_kernel_ns(vcpu1) "] {
            #expect(lines.contains { $0.hasPrefix(row) }, "\(batch.stdout)")
        }
        // The test runner itself has no vCPU threads: nothing of it is reported.
        let mine = try run(kvmstatBinary, ["-1", "--source", "vcpu", "-p", "\(getpid())", "-f", "^vcpu_kernel_ns$"])
        #expect(mine.stdout.split(separator: "\n").map(String.init) == [BatchAndLogTests.line("vcpu_kernel_ns", 0)],
                "\(mine.stdout)")
    }
}
