import Foundation
import KVMTestSupport
import Testing

/// The qmp source among untrusted neighbours: any local user can start a process whose command
/// line looks like QEMU's and names any socket. Run as such a user would (`nobody`).
@Suite(.serialized, .enabled(if: Kernel.required || (Kernel.available && QEMUGuest.available),
                             "needs real KVM and qemu-system-x86"))
struct QMPTrustTests {
    /// A process run as `nobody` with `arguments` as its command line after `python3 -c SCRIPT`.
    static func asNobody(_ script: String, _ arguments: [String]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        process.arguments = ["--reuid", "nobody", "--regid", "nogroup", "--clear-groups", "/usr/bin/python3", "-c", script]
            + arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    static func stop(_ process: Process) {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// `nobody`'s process names root's real monitor (which it cannot even open): it is not
    /// that guest's monitor (SO_PEERCRED names the real QEMU), so nothing is counted twice.
    @Test func aCommandLineNamingAnotherProcesssMonitorIsNotBelieved() throws {
        let guest = try QEMUGuest(outs: 1_000)
        try guest.waitUntilHalted()
        let impostor = try Self.asNobody("import time; time.sleep(60)",
                                         ["-qmp", "unix:\(guest.socket),server=on,wait=off", "-name", "guest=impostor"])
        defer { Self.stop(impostor) }
        #expect(waitUntil { (try? String(contentsOfFile: "/proc/\(impostor.processIdentifier)/cmdline", encoding: .utf8))?
            .contains("impostor") == true })
        let result = try run(kvmstatBinary, ["--source", "qmp", "-1", "-i", "-f", "^exits$", "--format", "prometheus"])
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n")
        func total(_ prefix: String) -> Int {
            lines.filter { $0.hasPrefix(prefix) }.compactMap { $0.split(separator: " ").last.flatMap { Int($0) } }.reduce(0, +)
        }
        // Counted once, under its own QEMU; the impostor has no series and is said once.
        #expect(total("kvm_guest_exits_total{guest=\"\(guest.name)\"") >= 1_000, "\(result.stdout)")
        #expect(!lines.contains { $0.contains("guest=\"impostor\"") }, "\(result.stdout)")
        // (The host's total also holds guests of other tests that came and went meanwhile.)
        #expect(total("kvm_exits_total") >= total("kvm_guest_exits_total{guest=\"\(guest.name)\""))
        #expect(result.stderr.contains("guest impostor") && result.stderr.contains("not by this process"), "\(result.stderr)")
        let only = try run(kvmstatBinary, ["--source", "qmp", "-1", "-i", "-f", "^exits$", "-p", "\(impostor.processIdentifier)"])
        #expect((parseBatch(only.stdout)["exits"]?.0 ?? 0) == 0, "\(only.stdout)\(only.stderr)")
    }

    /// Monitors that stall or stream without end cost a sample no more than their own time:
    /// a real guest beside four of them is counted every sample, and `-1` ends on time.
    @Test func stallingAndStreamingMonitorsCostTheOthersNothing() throws {
        let guest = try QEMUGuest(outs: 1_000)
        try guest.waitUntilHalted()
        let server = """
            import socket, sys, time, os
            path = sys.argv[sys.argv.index('-qmp') + 1][5:].split(',')[0]
            behaviour = sys.argv[1]
            s = socket.socket(socket.AF_UNIX); s.bind(path); os.chmod(path, 0o777); s.listen(8)
            while True:
                c, _ = s.accept()
                if behaviour == 'silent':
                    time.sleep(60)
                else:
                    c.sendall(b'{"QMP": {"version": {}}}\\n'); c.recv(4096); c.sendall(b'{"return": {}}\\n'); c.recv(4096)
                    try:
                        while True: c.sendall(b'{"event": "X", "data": {}}\\n' * 1000)
                    except OSError:
                        pass
            """
        var fakes: [(Process, String)] = []
        defer {
            for (process, directory) in fakes {
                Self.stop(process)
                try? FileManager.default.removeItem(atPath: directory)
            }
        }
        for behaviour in ["silent", "silent", "silent", "stream", "stream"] {
            let directory = NSTemporaryDirectory() + "kvmstat-hostile-qmp-" + UUID().uuidString
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o777])
            let path = directory + "/qmp.sock"
            fakes.append((try Self.asNobody(server, [behaviour, "-qmp", "unix:\(path),server=on,wait=off",
                                                     "-name", "guest=hostile-\(behaviour)"]), directory))
            #expect(waitUntil { FileManager.default.fileExists(atPath: path) })
        }
        let started = Date()
        let once = try run(kvmstatBinary, ["--source", "qmp", "-1", "-i", "-f", "^exits$", "--by-guest"])
        #expect(Date().timeIntervalSince(started) < 4, "bounded")
        #expect(once.stdout.contains("\(guest.name) (pid \(guest.pid))"), "\(once.stdout)\(once.stderr)")
        // A log keeps its schedule and counts the real guest in every record.
        let log = try BackgroundKvmstat(["--source", "qmp", "-l", "--format", "jsonl", "-s", "0.5", "-i",
                                         "-f", "^exits$"])
        #expect(log.waitForLines(6, within: 8), "records keep coming")
        log.signal(SIGINT)
        let result = log.finish()
        let totals = jsonTotals(result.stdout, "exits")
        #expect(totals.count >= 6 && totals.allSatisfy { $0 >= 1_000 }, "\(totals) \(result.stderr)")
    }
}
