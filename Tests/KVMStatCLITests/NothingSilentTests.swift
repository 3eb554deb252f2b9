import Foundation
import KVMTestSupport
import Testing

/// Every way of seeing nothing says why, once, with the fix: tracefs and debugfs not mounted
/// (a private mount namespace unmounts them for kvmstat alone), no QEMU with a monitor (a
/// private pid namespace hides the other tests' guests), guests sharing a cgroup, and
/// `kvm_exit` that this host's KVM module never fires.
@Suite(.enabled(if: Kernel.available && FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare"),
                realKernelNeeded))
struct NothingSilentTests {
    @Test func unmountedTracefsAndDebugfsNameTheMounts() throws {
        let script = "umount /sys/kernel/tracing 2>/dev/null; umount /sys/kernel/debug/tracing 2>/dev/null; "
            + "umount /sys/kernel/debug; exec '\(kvmstatBinary)' -1"
        let result = try run("/usr/bin/unshare", ["-m", "/bin/sh", "-c", script])
        #expect(result.status == 1, "\(result.stderr)")
        // Upstream's words, then kvmstat's line with the tracefs mount.
        #expect(result.stderr.contains("Please enable CONFIG_TRACING in your kernel when using the option -t (default).\n"))
        #expect(result.stderr.contains("'mount -t tracefs tracefs /sys/kernel/tracing'"), "\(result.stderr)")
        #expect(result.stderr.contains("('mount -t debugfs debugfs /sys/kernel/debug')"))
        #expect(result.stdout.isEmpty)
    }

    @Test func qmpWithoutAMonitorSaysHowToGiveOne() throws {
        // Alone in a pid namespace: no QEMU of another test's is seen.
        let result = try run("/usr/bin/unshare", ["-m", "-p", "-f", "--mount-proc", kvmstatBinary, "-1", "--source", "qmp"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("qmp: no QEMU with a QMP monitor on a unix socket is running"), "\(result.stderr)")
        #expect(result.stderr.contains("-qmp unix:"), "\(result.stderr)")
    }

    @Test func guestsSharingACgroupAreNamed() throws {
        let name = "silent-\(getpid())-\(UUID().uuidString.prefix(6))"
        // The test runner's cgroup holds the runner too: the guest is not alone in it.
        let workload = try WorkloadProcess(vcpus: 1, iterations: 10, name: name)
        defer { workload.stop() }
        let result = try run(kvmstatBinary, ["-1", "--by-guest"])
        #expect(result.status == 0, "\(result.stderr)")
        let line = result.stderr.split(separator: "\n").first { $0.contains("not alone in a cgroup") }
        #expect(line?.contains("\(name) (pid \(workload.pid))") == true, "\(result.stderr)")
        #expect(line?.contains("--source bpf") == true && line?.contains("systemd-run --scope") == true)
        #expect(result.stdout.contains("(host, guests sharing a cgroup)"))
    }

    /// Where `kvm_exit` never fires (this host's kvm_pvm) while guests exit to userspace,
    /// kvmstat says so once; where it fires, nothing is said.
    @Test func kvmExitThatNeverFiresIsExplained() throws {
        let workload = try WorkloadProcess(vcpus: 1, iterations: 2_000)
        defer { workload.stop() }
        let kvmstat = try BackgroundKvmstat(["-1", "-p", "\(workload.pid)", "-f", "^kvm_exit$|^kvm_userspace_exit$"])
        kvmstat.waitUntilCounting()
        try workload.run()
        let result = kvmstat.finish()
        #expect(result.status == 0, "\(result.stderr)")
        let count = { (name: String) in
            result.stdout.split(separator: "\n").first { $0.hasPrefix(name + " ") }
                .flatMap { Int($0.split(separator: " ")[1]) } ?? -1
        }
        #expect(count("kvm_userspace_exit") == 6_000, "\(result.stdout)")
        let said = result.stderr.contains("kvm_exit has not fired while guests exited to userspace")
        #expect(said == (count("kvm_exit") == 0), "\(result.stderr)")
        if said { #expect(result.stderr.contains("--source qmp")) }
    }
}
