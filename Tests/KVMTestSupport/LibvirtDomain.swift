import Foundation
import KVMCore

/// Debian's libvirt daemon (`libvirtd -d`, as root, without systemd) with its QEMU driver,
/// configured as `.ci/run` configures it (/etc/libvirt/qemu.conf: root, no security driver,
/// no cgroups or namespaces). Tests start it when it is not running and stop and start it
/// again to test a restart.
public enum LibvirtDaemon {
    public static let daemon = "/usr/sbin/libvirtd"
    public static let virsh = "/usr/bin/virsh"
    public static let uri = "qemu:///system"
    static let pidFile = "/run/libvirtd.pid"

    /// libvirtd, virsh and the client library are installed.
    public static var installed: Bool {
        FileManager.default.isExecutableFile(atPath: daemon) && FileManager.default.isExecutableFile(atPath: virsh)
            && (try? SharedLibrary("libvirt.so.0")) != nil
    }

    /// Whether the daemon answers on its read-only socket.
    public static var answers: Bool {
        (try? virshRun(["-r", "-c", uri, "version", "--daemon"]))?.status == 0
    }

    /// Starts the daemon unless it answers already; waits until it does.
    public static func ensureRunning() throws {
        if answers { return }
        for directory in ["/var/log/libvirt", "/var/run/libvirt"] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        // Spawned and reaped by hand: Foundation's Process does not notice the exit of a
        // program that daemonizes (`-d`), and would wait for ever.
        var pid: pid_t = 0
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup(daemon), strdup("-d"), nil]
        defer { argv.forEach { free($0) } }
        guard posix_spawn(&pid, daemon, &actions, nil, argv, environ) == 0 else {
            throw QEMUGuest.Failure(description: "cannot start \(daemon)")
        }
        var status: Int32 = 0
        _ = waitpid(pid, &status, 0)
        let deadline = Date().addingTimeInterval(15)
        while !answers {
            guard Date() < deadline else { throw QEMUGuest.Failure(description: "libvirtd did not start") }
            usleep(100_000)
        }
    }

    /// The running daemon's pid.
    public static func pid() throws -> Int32 {
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
              let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
        else { throw QEMUGuest.Failure(description: "libvirtd has no pid file") }
        return pid
    }

    /// Stops the daemon (its domains keep running, as with a real restart) and waits until
    /// it has gone.
    public static func stop() throws {
        let pid = try pid()
        kill(pid, SIGKILL)
        let deadline = Date().addingTimeInterval(10)
        while kill(pid, 0) == 0 && Date() < deadline { usleep(50_000) }
        try? FileManager.default.removeItem(atPath: pidFile)
    }

    @discardableResult
    static func virshRun(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: virsh)
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

/// A transient libvirt domain (`virsh create`) running the same firmware as `QEMUGuest`:
/// `outs` port writes, then `cli; hlt`. Destroyed when released.
public final class LibvirtDomain: Sendable {
    public let name: String
    public let outs: Int
    private let directory: String

    /// `maxVCPUs`: room for vCPUs plugged later (`virsh setvcpus --live`).
    public init(outs: Int, vcpus: Int = 1, maxVCPUs: Int? = nil, name: String? = nil) throws {
        self.outs = outs
        self.name = name ?? "kvmstat-test-\(getpid())-\(UUID().uuidString.prefix(8))"
        directory = NSTemporaryDirectory() + "kvmstat-libvirt-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let firmware = directory + "/fw.bin"
        try QEMUGuest.firmware(outs: outs).write(to: URL(fileURLWithPath: firmware))
        let xml = """
            <domain type='kvm'>
              <name>\(self.name)</name>
              <memory unit='MiB'>16</memory>
              <vcpu\(maxVCPUs == nil ? "" : " current='\(vcpus)'")>\(maxVCPUs ?? vcpus)</vcpu>
              <os><type arch='x86_64' machine='pc'>hvm</type><loader type='rom'>\(firmware)</loader></os>
              <cpu mode='custom' match='exact'><model fallback='allow'>qemu64</model>
                <feature policy='disable' name='svm'/></cpu>
              <devices><emulator>\(QEMUGuest.binary)</emulator>
                <video><model type='none'/></video><memballoon model='none'/></devices>
            </domain>
            """
        let file = directory + "/domain.xml"
        try xml.write(toFile: file, atomically: true, encoding: .utf8)
        let created = try LibvirtDaemon.virshRun(["-c", LibvirtDaemon.uri, "create", file])
        guard created.status == 0 else {
            try? FileManager.default.removeItem(atPath: directory)
            throw QEMUGuest.Failure(description: "virsh create failed: \(created.output)")
        }
    }

    deinit {
        destroy()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// The domain's QEMU process, from libvirt's pid file.
    public var pid: Int32 {
        let text = (try? String(contentsOfFile: "/run/libvirt/qemu/\(name).pid", encoding: .utf8)) ?? ""
        return Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
    }

    /// Sets the running domain's vCPUs (`virsh setvcpus --live`: hotplug); the output on failure.
    public func setVCPUs(_ count: Int) throws {
        let result = try LibvirtDaemon.virshRun(["-c", LibvirtDaemon.uri, "setvcpus", name, "\(count)", "--live"])
        guard result.status == 0 else { throw QEMUGuest.Failure(description: "virsh setvcpus failed: \(result.output)") }
    }

    /// Ends the domain and removes the log libvirt kept of its QEMU (a test leaves nothing
    /// in /var/log/libvirt/qemu).
    public func destroy() {
        _ = try? LibvirtDaemon.virshRun(["-c", LibvirtDaemon.uri, "destroy", name])
        try? FileManager.default.removeItem(atPath: "/var/log/libvirt/qemu/\(name).log")
    }

    /// One statistic of the domain as `virsh domstats` gives it (`vcpu.0.halt_exits.sum`).
    public func stat(_ field: String) throws -> Int? {
        let result = try LibvirtDaemon.virshRun(["-r", "-c", LibvirtDaemon.uri, "domstats", "--vm", "--vcpu", name])
        for line in result.output.split(separator: "\n") {
            let parts = line.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
            if parts.count == 2, parts[0] == field { return Int(parts[1]) }
        }
        return nil
    }

    /// Waits until the guest has halted.
    public func waitUntilHalted(timeout: Double = 15) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try stat("vcpu.0.halt_exits.sum") == 1 { return }
            usleep(50_000)
        }
        throw QEMUGuest.Failure(description: "domain \(name) did not halt")
    }
}
