import KVMCore

/// QEMU processes with a QMP monitor on a unix socket they serve, found from their command
/// lines: `-qmp unix:PATH,server=on,wait=off`, and `-chardev socket,id=ID,path=PATH,server=on`
/// with `-mon chardev=ID,mode=control`. Not: client sockets (no `server`: a management
/// daemon listens there), pretty-printed monitors (`-qmp-pretty`, `pretty=on`: answers span
/// lines), and monitors passed as an inherited descriptor (`fd=N`, as libvirt does: no path,
/// libvirt's to serve). The path is the process's, in its own mount namespace: read through
/// /proc/PID/root (absolute) or /proc/PID/cwd (relative), so a containerised QEMU's monitor is
/// its own, not a host file of the same name.
struct QEMUMonitor: Equatable, Sendable {
    let pid: Int
    let name: String
    let socketPath: String

    /// How warnings name it: `web1 (pid 4242)`, `? (pid 4242)` without a name.
    var label: String { "\(name.isEmpty ? "?" : name) (pid \(pid))" }
}

enum QEMUMonitors {
    /// The monitor socket of a QEMU command line, if it has one.
    static func socketPath(fromArguments arguments: [String]) -> String? {
        var chardevPaths: [String: String] = [:]
        var controlChardevs: [String] = []
        var index = 1
        while index < arguments.count {
            let option = arguments[index]
            let value = index + 1 < arguments.count ? arguments[index + 1] : ""
            switch option {
            case "-qmp", "--qmp":
                if value.hasPrefix("unix:") {
                    let parts = QEMUOptions.split(String(value.dropFirst(5)))
                    if let path = parts.first, !path.isEmpty, QEMUOptions.isServer(parts) { return path }
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
                    controlChardevs.append(id)
                }
                index += 2
            default:
                index += 1
            }
        }
        return controlChardevs.lazy.compactMap { chardevPaths[$0] }.first
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
        known = known.filter { live.contains($0.key) }
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
            if var path = socketPath(fromArguments: arguments) {
                path = path.hasPrefix("/") ? "\(proc)/\(pid)/root" + path : "\(proc)/\(pid)/cwd/" + path
                found = QEMUMonitor(pid: pid, name: Guests.guestName(fromArguments: arguments), socketPath: path)
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
