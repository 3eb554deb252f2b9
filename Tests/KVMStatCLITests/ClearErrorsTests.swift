import Foundation
import KVMTestSupport
import Testing

/// Failures an operator meets, each one line that says what to do.
@Suite struct ClearErrorsTests {
    @Test(.enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"),
                   "runs kvmstat as nobody: needs root and setpriv"))
    func notRootSaysItNeedsRoot() throws {
        guard Kernel.paths != nil else { return }
        let result = try run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups",
                                                  kvmstatBinary, "-1", "-d"])
        #expect(result.status == 1)
        #expect(result.stderr.hasPrefix("kvmstat: ") && result.stderr.contains("needs root"), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1)
    }

    @Test(.enabled(if: Kernel.available && getuid() == 0
                   && FileManager.default.isExecutableFile(atPath: "/usr/sbin/capsh"), realKernelNeeded))
    func rootWithoutCapSysResourceIsNamed() throws {
        let workload = try WorkloadProcess(vms: 1, vcpus: 2, iterations: 10)
        let result = try run("/usr/bin/prlimit", ["--nofile=64:64", "/usr/sbin/capsh", "--drop=cap_sys_resource",
                                                  "--", "-c", "'\(kvmstatBinary)' -1 -p \(workload.pid)"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("CAP_SYS_RESOURCE"), "\(result.stderr)")
        #expect(!result.stderr.contains("run as root"))
    }

    @Test func logFileErrorsSayWhy() throws {
        let tree = try FakeTree(fields: ["exits"])
        let result = try run(kvmstatBinary, ["-d", "-L", "/nonexistent/dir/kvmstat.log"], environment: tree.environment)
        #expect(result.status == 1)
        #expect(result.stderr == "Error: Could not open file: /nonexistent/dir/kvmstat.log (No such file or directory)\n")
    }

    @Test func hugePidDoesNotExist() throws {
        let tree = try FakeTree(fields: ["exits"])
        for pid in ["99999999999999999999", "1_000_000_000_000_000_000_000"] {
            let result = try run(kvmstatBinary, ["-d", "-1", "-p", pid], environment: tree.environment)
            #expect(result.status == 1, "\(pid)")
            #expect(result.stderr.contains("does not exist") && !result.stderr.contains("invalid int"), "\(result.stderr)")
        }
    }
}
