import KVMCore

/// QEMU processes with a QMP monitor on a unix socket they serve, found from their command
/// lines: `-qmp unix:PATH,server=on,wait=off`, and `-chardev socket,id=ID,path=PATH,server=on`
/// with `-mon chardev=ID,mode=control`. Not: client sockets (no `server`: a management
/// daemon listens there), pretty-printed monitors (`-qmp-pretty`, `pretty=on`: answers span
/// lines), and monitors passed as an inherited descriptor (`fd=N`, as libvirt does: no path,
/// libvirt's to serve). The path is the process's, in its own mount namespace: read through
/// /proc/PID/root (absolute) or /proc/PID/cwd (relative), so a containerised QEMU's monitor is
/// its own, not a host file of the same name. A monitor whose chardev id is `kvmstat` is
/// kvmstat's own (`reserved`) and preferred.
struct QEMUMonitor: Equatable, Sendable {
    let pid: Int
    let name: String
    let socketPath: String
    /// Whether it is the monitor QEMU keeps for kvmstat (`-chardev socket,id=kvmstat,...`
    /// with `-mon chardev=kvmstat,mode=control`): nobody else's, so kvmstat stays connected
    /// to it between samples instead of connecting for each.
    var reserved = false
    /// The guest's other monitor, the operator's, when it has one beside the reserved one:
    /// asked (for each sample) while another client, another kvmstat, holds the reserved one.
    var sharedPath: String?

    /// How warnings name it: `web1 (pid 4242)`, `? (pid 4242)` without a name.
    var label: String { "\(name.isEmpty ? "?" : name) (pid \(pid))" }
}

enum QEMUMonitors {
    /// The chardev id that marks a monitor as kvmstat's own.
    static let reservedID = "kvmstat"

    /// The monitor sockets a QEMU command line names, in its order: a path each, and the
    /// chardev id of those given by `-mon` (nil for `-qmp`).
    static func controlSockets(fromArguments arguments: [String]) -> [(path: String, id: String?)] {
        var chardevPaths: [String: String] = [:]
        var sockets: [(path: String?, id: String?)] = []
        var index = 1
        while index < arguments.count {
            let option = arguments[index]
            let value = index + 1 < arguments.count ? arguments[index + 1] : ""
            switch option {
            case "-qmp", "--qmp":
                if value.hasPrefix("unix:") {
                    let parts = QEMUOptions.split(String(value.dropFirst(5)))
                    if let path = parts.first, !path.isEmpty, QEMUOptions.isServer(parts) { sockets.append((path, nil)) }
                }
                index += 2
            case "-chardev", "--chardev":
                let parts = QEMUOptions.split(value)
                if parts.first == "socket", let id = QEMUOptions.value("id", in: parts),
                   let path = QEMUOptions.value("path", in: parts), QEMUOptions.isServer(parts) {
                    chardevPaths[id] = path
                }
                index += 2
            case "-mon", "--mon":
                let parts = QEMUOptions.split(value)
                if let id = QEMUOptions.value("chardev", in: parts),
                   (QEMUOptions.value("mode", in: parts) ?? "readline") == "control",
                   !["on", "yes", "true"].contains(QEMUOptions.value("pretty", in: parts) ?? "off") {
                    sockets.append((nil, id))
                }
                index += 2
            default:
                index += 1
            }
        }
        // A `-mon` may come before its `-chardev`: paths are looked up once all are known.
        return sockets.compactMap { socket in
            guard let path = socket.path ?? socket.id.flatMap({ chardevPaths[$0] }) else { return nil }
            return (path, socket.id)
        }
    }

    /// The monitor kvmstat asks of a QEMU command line: the one reserved for it (with the
    /// operator's beside it, if any), else the first.
    static func monitor(fromArguments arguments: [String]) -> (path: String, reserved: Bool, shared: String?)? {
        let sockets = controlSockets(fromArguments: arguments)
        guard let reserved = sockets.first(where: { $0.id == reservedID }) else {
            return sockets.first.map { ($0.path, false, nil) }
        }
        return (reserved.path, true, sockets.first { $0.id != reservedID }?.path)
    }

    /// What is known of a process's command line: its monitor, and when it was read.
    struct Known {
        let monitor: QEMUMonitor?
        let sample: Int
    }

    /// A process without a monitor is looked at again after this many samples (a wrapper
    /// that `exec`s QEMU changes its command line once).
    static let recheck = 20

    /// Every process on the host whose command line names a QMP unix socket it serves; nil
    /// when /proc cannot be listed (no news: nobody departs).
    static func all(proc: String, known: inout [Int: Known], sample: Int) -> [QEMUMonitor]? {
        guard let pids = try? FileSystem.numericEntries(proc) else { return nil }
        let live = Set(pids)
        // Made anew only when a process went (not every sample: a big host's is hundreds).
        if known.keys.contains(where: { !live.contains($0) }) { known = known.filter { live.contains($0.key) } }
        var monitors: [QEMUMonitor] = []
        for pid in pids {
            if let cached = known[pid], cached.monitor != nil || sample - cached.sample < recheck {
                if let monitor = cached.monitor { monitors.append(monitor) }
                continue
            }
            // Unreadable (gone, or not ours to read) is looked at again next sample; an empty
            // command line (a kernel thread, a zombie) is known like any other: a host's
            // hundreds of kernel threads are not read again every sample.
            guard let arguments = Guests(proc: proc).arguments(of: pid) else { continue }
            var found: QEMUMonitor?
            if let named = monitor(fromArguments: arguments) {
                // As the process sees the path: in its own mount namespace and directory.
                func seen(_ path: String) -> String {
                    path.hasPrefix("/") ? "\(proc)/\(pid)/root" + path : "\(proc)/\(pid)/cwd/" + path
                }
                found = QEMUMonitor(pid: pid, name: Guests.guestName(fromArguments: arguments), socketPath: seen(named.path),
                                    reserved: named.reserved, sharedPath: named.shared.map(seen))
            }
            known[pid] = Known(monitor: found, sample: sample)
            if let found { monitors.append(found) }
        }
        return monitors
    }
}

/// QEMU's `key=value,key=value` option syntax, where `,,` is a literal comma.
enum QEMUOptions {
    static func split(_ text: String) -> [String] {
        var parts: [String] = []
        var current = ""
        var chars = Array(text)
        var i = 0
        while i < chars.count {
            if chars[i] == "," {
                if i + 1 < chars.count && chars[i + 1] == "," {
                    current.append(",")
                    i += 2
                    continue
                }
                parts.append(current)
                current = ""
            } else {
                current.append(chars[i])
            }
            i += 1
        }
        parts.append(current)
        chars.removeAll()
        return parts
    }

    /// `server`, `server=on` (QEMU's older and newer spellings).
    static func isServer(_ parts: [String]) -> Bool {
        parts.contains("server") || ["on", "yes", "true"].contains(value("server", in: parts) ?? "off")
    }

    static func value(_ key: String, in parts: [String]) -> String? {
        parts.first { $0.hasPrefix(key + "=") }.map { String($0.dropFirst(key.count + 1)) }
    }
}
