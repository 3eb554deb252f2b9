import KVMCore

/// Running guests, found from QEMU-style command lines in /proc/*/cmdline (no `ps`).
public struct Guests: Sendable {
    public let proc: String

    public init(proc: String = "/proc") { self.proc = proc }

    /// The guest name of a process from its `-name` argument, or "" when it has none.
    public func name(of pid: Int) -> String {
        guard let argv = arguments(of: pid) else { return "" }
        return Guests.guestName(fromArguments: argv)
    }

    /// Every process with a `-name` argument, as (pid, guest name), by pid.
    public func all() -> [(pid: Int, name: String)] {
        guard let entries = try? FileSystem.listDirectory(proc) else { return [] }
        var result: [(Int, String)] = []
        for entry in entries {
            guard let pid = Int(entry.name), let argv = arguments(of: pid),
                  argv.dropFirst().contains("-name")
            else { continue }
            result.append((pid, Guests.guestName(fromArguments: argv)))
        }
        return result.sorted { $0.0 < $1.0 }
    }

    /// The pids whose guest name is exactly `name`.
    public func pids(named name: String) -> [Int] {
        all().filter { $0.name == name }.map(\.pid)
    }

    /// Whether the process exists and has not exited (a zombie, whose parent has not
    /// collected it yet, is dead for kvmstat's purposes).
    public func isRunning(_ pid: Int) -> Bool {
        guard let state = ProcStat(path: "\(proc)/\(pid)/stat")?.state else { return false }
        return state != "Z" && state != "X"
    }

    func arguments(of pid: Int) -> [String]? {
        guard let text = try? FileSystem.readText("\(proc)/\(pid)/cmdline") else { return nil }
        var argv = text.split(separator: "\0", omittingEmptySubsequences: false).map(String.init)
        if argv.last == "" { argv.removeLast() }
        return argv
    }

    /// QEMU's `-name` value: `NAME` or `guest=NAME,...`, where `,,` is an escaped comma and a
    /// plain name wins over `guest=`. Malformed values give "".
    public static func guestName(fromArguments argv: [String]) -> String {
        guard let index = argv.firstIndex(of: "-name"), index + 1 < argv.count else { return "" }
        var parts = argv[index + 1].split(separator: ",", omittingEmptySubsequences: false)
            .map(String.init)
        // Re-join escaped commas: "a,,b" split into ["a", "", "b"] means "a,b".
        while let empty = parts.firstIndex(of: "") {
            guard empty > 0, empty + 1 < parts.count else { return "" }
            parts[empty - 1] += "," + parts[empty + 1]
            parts.removeSubrange(empty...(empty + 1))
        }
        var name = ""
        for part in parts {
            if !part.contains("=") { return part }
            if part.hasPrefix("guest=") { name = String(part.dropFirst(6)) }
        }
        return name
    }
}

/// The names of the guests a source reports, from their command lines; kept between samples,
/// so that a log or the endpoint reads a guest's /proc/PID/cmdline once, not every sample
/// (200 guests at -s 0.1 would be 2,000 reads a second). Sources that know no names
/// themselves (debugfs, tracepoints) use it.
public struct GuestNames: Sendable {
    private var known: [Int: String] = [:]
    private let guests: Guests

    public init(proc: String = "/proc") { guests = Guests(proc: proc) }

    /// Names the guests a reading has rows or values of (`Reading.guestNames`).
    public mutating func name(_ reading: inout Reading) {
        reading.guestNames = names(of: Array(reading.values.keys.compactMap(\.guest))
            + reading.guestValues.guests.compactMap { $0 })
    }

    /// The names of `pids` (real processes only: special rows and remote guests have none);
    /// pids not asked for are forgotten (a new process may take one).
    public mutating func names<S: Sequence>(of pids: S) -> [Int: String] where S.Element == Int {
        var names: [Int: String] = [:]
        for pid in pids where pid > 0 && names[pid] == nil {
            if known[pid] == nil { known[pid] = guests.name(of: pid) }
            names[pid] = known[pid]
        }
        if known.count > names.count { known = known.filter { names[$0.key] != nil } }
        return names
    }
}
