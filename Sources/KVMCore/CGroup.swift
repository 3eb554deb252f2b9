/// A cgroup v2 directory and what kvmstat asks of it: which tasks it holds (itself and every
/// cgroup below it, as perf's cgroup events count them), and whether one process is alone in
/// it. libvirt and systemd put each guest in a cgroup of its own (`machine-qemu…scope`).
public struct CGroup: Sendable, Equatable {
    /// The directory under the cgroup2 mount.
    public let directory: String
    /// Its path inside the hierarchy (`/machine.slice/…`), as /proc/PID/cgroup names it.
    public let path: String

    /// The cgroup v2 group of a process (the `0::PATH` line of /proc/PID/cgroup); nil without
    /// a v2 hierarchy or when the process has gone.
    public static func of(pid: Int, paths: SystemPaths) -> CGroup? {
        guard let mount = paths.cgroup2,
              let text = try? FileSystem.readText("\(paths.proc)/\(pid)/cgroup")
        else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("0::") {
            let path = String(line.dropFirst(3))
            guard path.hasPrefix("/"), !path.hasSuffix(" (deleted)") else { return nil }
            let directory = path == "/" ? mount : mount + path
            return FileSystem.isDirectory(directory) ? CGroup(directory: directory, path: path) : nil
        }
        return nil
    }

    /// Every thread in this cgroup and the cgroups below it; nil when a listing fails.
    public func threads() -> [Int]? {
        var all: [Int] = []
        var pending = [directory]
        while let next = pending.popLast() {
            guard let text = try? FileSystem.readText(next + "/cgroup.threads"),
                  let entries = try? FileSystem.listDirectory(next)
            else { return nil }
            all += text.split(separator: "\n").compactMap { Int($0) }
            pending += entries.filter(\.isDirectory).map { next + "/" + $0.name }
        }
        return all
    }

    /// Whether every task of the cgroup (and below) is a thread of `pid`: then counting the
    /// cgroup counts exactly that process, including threads it starts later.
    public func holdsOnly(pid: Int, proc: String) -> Bool {
        guard let threads = threads(), !threads.isEmpty,
              let own = try? FileSystem.numericEntries("\(proc)/\(pid)/task")
        else { return false }
        return Set(threads).isSubset(of: Set(own)) || threads.allSatisfy { Self.process(of: $0, proc: proc) == pid }
    }

    /// The process (thread group) a thread belongs to.
    static func process(of tid: Int, proc: String) -> Int? {
        guard let status = try? FileSystem.readText("\(proc)/\(tid)/status") else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("Tgid:") {
            return Int(String(line.dropFirst(5)).trimmingBlanks())
        }
        return nil
    }

    /// Whether the cgroup's own process list still names only `pid` (a cheap check, each
    /// sample, that nothing else joined).
    public func stillOnly(pid: Int) -> Bool {
        guard let text = try? FileSystem.readText(directory + "/cgroup.procs") else { return false }
        return text.split(separator: "\n").allSatisfy { Int($0) == pid }
    }
}
