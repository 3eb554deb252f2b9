import KVMCore

/// QEMU processes with a QMP monitor on a unix socket, found from their command lines:
/// `-qmp unix:PATH,server=on,wait=off` (or `-qmp-pretty`), and `-chardev socket,id=ID,path=PATH,
/// server=on` with `-mon chardev=ID,mode=control`. A monitor passed as an inherited descriptor
/// (`fd=N`, as libvirt does) has no path and is libvirt's to serve.
struct QEMUMonitor: Equatable, Sendable {
    let pid: Int
    let name: String
    let socketPath: String
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
            case "-qmp", "-qmp-pretty", "--qmp", "--qmp-pretty":
                if value.hasPrefix("unix:") {
                    let path = String(value.dropFirst(5).prefix { $0 != "," })
                    if !path.isEmpty { return path }
                }
                index += 2
            case "-chardev", "--chardev":
                let parts = QEMUOptions.split(value)
                if parts.first == "socket", let id = QEMUOptions.value("id", in: parts),
                   let path = QEMUOptions.value("path", in: parts) {
                    chardevPaths[id] = path
                }
                index += 2
            case "-mon", "--mon":
                let parts = QEMUOptions.split(value)
                if let id = QEMUOptions.value("chardev", in: parts),
                   (QEMUOptions.value("mode", in: parts) ?? "readline") == "control" {
                    controlChardevs.append(id)
                }
                index += 2
            default:
                index += 1
            }
        }
        return controlChardevs.lazy.compactMap { chardevPaths[$0] }.first
    }

    /// Every process on the host whose command line names a QMP unix socket.
    static func all(proc: String, known: inout [Int: QEMUMonitor?]) -> [QEMUMonitor] {
        guard let pids = try? FileSystem.numericEntries(proc) else { return [] }
        let live = Set(pids)
        known = known.filter { live.contains($0.key) }
        var monitors: [QEMUMonitor] = []
        for pid in pids {
            if let cached = known[pid] {
                if let cached { monitors.append(cached) }
                continue
            }
            // A process's command line does not change: read it once.
            let arguments = Guests(proc: proc).arguments(of: pid) ?? []
            var found: QEMUMonitor?
            if let path = socketPath(fromArguments: arguments) {
                found = QEMUMonitor(pid: pid, name: Guests.guestName(fromArguments: arguments), socketPath: path)
            }
            if !arguments.isEmpty { known[pid] = found }
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

    static func value(_ key: String, in parts: [String]) -> String? {
        parts.first { $0.hasPrefix(key + "=") }.map { String($0.dropFirst(key.count + 1)) }
    }
}
