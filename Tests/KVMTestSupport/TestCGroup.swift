import Foundation
import KVMCore

/// A cgroup v2 directory of a test's own under the host's cgroup2 mount, found from
/// /proc/mounts (`/sys/fs/cgroup/unified` here, `/sys/fs/cgroup` on pure v2 hosts). Released
/// (its processes moved back to the root, the directory removed) when the test drops it.
public final class TestCGroup {
    public static var mount: String? { SystemPaths.detect().cgroup2 }
    public static var available: Bool { mount.map { FileManager.default.isWritableFile(atPath: $0) } ?? false }

    public let directory: String
    /// The path as /proc/PID/cgroup names it.
    public let path: String
    private let root: String

    public init(_ label: String = "test") throws {
        guard let mount = Self.mount else { throw QEMUGuest.Failure(description: "no cgroup v2 mounted") }
        root = mount
        path = "/kvmstat-\(label)-\(getpid())-\(UUID().uuidString.prefix(8))"
        directory = mount + path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
    }

    /// Moves a process (all its threads) into the cgroup.
    public func add(_ pid: Int32) throws {
        try "\(pid)\n".write(toFile: directory + "/cgroup.procs", atomically: false, encoding: .utf8)
    }

    deinit {
        // Whatever is still inside goes back to the root (a cgroup with tasks cannot go).
        let procs = (try? String(contentsOfFile: directory + "/cgroup.procs", encoding: .utf8)) ?? ""
        for pid in procs.split(separator: "\n") {
            try? "\(pid)\n".write(toFile: root + "/cgroup.procs", atomically: false, encoding: .utf8)
        }
        rmdir(directory)
    }
}
