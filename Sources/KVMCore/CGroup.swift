/// A cgroup v2 directory and what kvmstat asks of it: which tasks it holds (itself and every
/// cgroup below it, as perf's cgroup events count them), and whether one process is alone in
/// it. libvirt and systemd put each guest in a cgroup of its own (`machine-qemu…scope`).
public struct CGroup: Sendable, Equatable {
    /// The directory under the cgroup2 mount.
    public let directory: String
    /// Its path inside the hierarchy (`/machine.slice/…`), as /proc/PID/cgroup names it.
    public let path: String

    /// The cgroup v2 group holding every thread of a process: the threads' own groups when
    /// they share one, else their closest common ancestor (libvirt puts QEMU's main thread in
    /// `…scope/libvirt/emulator` and each vCPU thread in a threaded `…/libvirt/vcpuN`: the
    /// scope's `libvirt` is what holds them all). Nil without a v2 hierarchy or when the
    /// process has gone.
    public static func of(pid: Int, paths: SystemPaths) -> CGroup? {
        guard let mount = paths.cgroup2 else { return nil }
        let tids = (try? FileSystem.numericEntries("\(paths.proc)/\(pid)/task")) ?? []
        var common: [Substring]?
        for file in ["\(paths.proc)/\(pid)/cgroup"] + tids.map({ "\(paths.proc)/\(pid)/task/\($0)/cgroup" }) {
            guard let path = v2Path(file) else {
                if file.hasSuffix("/\(pid)/cgroup") { return nil }
                continue  // a thread that just ended
            }
            let parts = path.split(separator: "/")
            guard let known = common else {
                common = parts
                continue
            }
            common = Array(zip(known, parts).prefix { $0.0 == $0.1 }.map(\.0))
        }
        guard let common else { return nil }
        let path = "/" + common.joined(separator: "/")
        let directory = common.isEmpty ? mount : mount + path
        return FileSystem.isDirectory(directory) ? CGroup(directory: directory, path: path) : nil
    }

    /// The cgroup v2 path of a process's main thread (cheap: one small read), to notice a
    /// process moved to another cgroup.
    public static func path(ofProcess pid: Int, proc: String) -> String? {
        v2Path("\(proc)/\(pid)/cgroup")
    }

    /// Whether the process's main thread is still in this cgroup or one below it (false once
    /// it was moved elsewhere, or the process has gone).
    public func holds(process pid: Int, proc: String) -> Bool {
        guard let current = Self.path(ofProcess: pid, proc: proc) else { return false }
        return current == path || current.hasPrefix(path == "/" ? "/" : path + "/")
    }

    /// The `0::PATH` line of a /proc cgroup file.
    static func v2Path(_ file: String) -> String? {
        guard let text = try? FileSystem.readText(file) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("0::") {
            let path = String(line.dropFirst(3))
            return path.hasPrefix("/") && !path.hasSuffix(" (deleted)") ? path : nil
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
        // Every task in the cgroup is the process's, and (with `of`'s common ancestor) every
        // thread of the process is in the cgroup.
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

    /// Whether the process lists of the cgroup and those below it still name only `pid` (a
    /// cheap check, each sample, that nothing else joined). Threaded cgroups have no process
    /// list and hold only threads of processes above them: they are skipped.
    public func stillOnly(pid: Int) -> Bool {
        var pending = [directory]
        while let next = pending.popLast() {
            if let text = try? FileSystem.readText(next + "/cgroup.procs"),
               !text.split(separator: "\n").allSatisfy({ Int($0) == pid }) {
                return false
            }
            pending += ((try? FileSystem.listDirectory(next)) ?? []).filter(\.isDirectory).map { next + "/" + $0.name }
        }
        return true
    }
}
