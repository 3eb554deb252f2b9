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

    /// A QEMU in a mount namespace of its own (a container's) names its monitor by a path
    /// only that namespace has: kvmstat finds it there (through /proc/PID/root), whether the
    /// path fits a socket address (connected to by path) or not (opened first, connected to
    /// through its descriptor); the host's same path has no monitor at all.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare"), "needs unshare"))
    func aMonitorInItsOwnMountNamespaceIsItsOwn() throws {
        let firmware = NSTemporaryDirectory() + "kvmstat-ns-bios-" + UUID().uuidString
        try QEMUGuest.firmware(outs: 700).write(to: URL(fileURLWithPath: firmware))
        defer { try? FileManager.default.removeItem(atPath: firmware) }
        var guests: [(Process, String, String)] = []
        defer {
            for (process, directory, _) in guests {
                Self.stop(process)
                try? FileManager.default.removeItem(atPath: directory)
            }
        }
        // A short path, and one that QEMU can bind (a socket address holds 107 bytes) but that
        // is too long for one once under /proc/PID/root.
        for long in [false, true] {
            var directory = NSTemporaryDirectory() + "kvmstat-ns-" + UUID().uuidString.prefix(8)
            if long { directory += String(repeating: "d", count: 100 - directory.utf8.count - "/qmp.sock".utf8.count) }
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let name = "kvmstat-ns-\(long ? "long" : "short")-\(getpid())"
            let qemu = [QEMUGuest.binary, "-enable-kvm", "-cpu", "max,-arch-capabilities", "-nodefaults", "-display", "none",
                        "-m", "16", "-bios", firmware, "-qmp", "unix:\(directory)/qmp.sock,server=on,wait=off",
                        "-name", "guest=\(name)"]
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
            // The namespace's own /tmp directory: the monitor exists only in there.
            process.arguments = ["-m", "--propagation", "private", "/bin/sh", "-c",
                                 "mount -t tmpfs none \"$0\" && exec \"$@\"", directory] + qemu
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            guests.append((process, directory, name))
            let inside = "/proc/\(process.processIdentifier)/root\(directory)/qmp.sock"
            #expect(waitUntil { FileManager.default.fileExists(atPath: inside) }, "QEMU's monitor at \(inside)")
            #expect(!FileManager.default.fileExists(atPath: directory + "/qmp.sock"), "not in the host's namespace")
            #expect(long == (inside.utf8.count >= 108))
        }
        var text = ""
        #expect(waitUntil(within: 15) {
            text = (try? run(kvmstatBinary, ["--source", "qmp", "-1", "-i", "-f", "^exits$", "--format", "prometheus"]))?
                .stdout ?? ""
            return guests.allSatisfy { _, _, name in
                text.split(separator: "\n").contains { line in
                    line.hasPrefix("kvm_guest_exits_total{guest=\"\(name)\"")
                        && (line.split(separator: " ").last.flatMap { Int($0) } ?? 0) >= 700
                }
            }
        }, "\(text)")
    }
}
