import KVMCore

/// What the tracepoint source knows before it opens anything: whether this host has what it
/// needs, its fields, and the online CPUs it counts on.
extension TracepointSource {
    /// Upstream's words where upstream has them: tracing missing (CONFIG_TRACING), KVM's
    /// tracepoints missing (the module is not loaded), no permission (not root), or an
    /// architecture of another machine (its perf numbers are not this kernel's).
    static func unavailableReason(_ configuration: SourceConfiguration) -> String? {
        let paths = configuration.paths
        let architecture = configuration.architecture
        guard configuration.architectureIsHosts else {
            return "kvmstat: tracepoints cannot be counted for --arch \(architecture.name) on this host: "
                + "its perf_event_open is syscall \(architecture.perfEventOpenSyscall) and its ioctls "
                + "are \(architecture.name)'s, not this kernel's; use -d (debugfs) or --arch-info"
        }
        if FileSystem.isDirectory(paths.kvmEvents) { return nil }
        do throws(Errno) {
            if try FileSystem.status(paths.tracing + "/events").isDirectory {
                return "Please make sure that CONFIG_KVM is enabled in your kernel and that the modules are loaded."
            }
        } catch {
            if error == .permissionDenied {
                return "kvmstat: cannot access \(paths.tracing): \(error): kvmstat needs root "
                    + "(tracefs is readable by root only)"
            }
        }
        return "Please enable CONFIG_TRACING in your kernel when using the option -t (default).\n"
            + "If it is enabled, make \(paths.tracing) readable by the current user."
    }

    /// Tracepoints that get one child per named value: tracepoint → (field, values).
    static func childFilters(_ architecture: any Architecture) -> [String: (field: String, reasons: [ExitReason])] {
        var filters: [String: (field: String, reasons: [ExitReason])] = [
            "kvm_userspace_exit": ("reason", UserspaceExitReasons.table),
        ]
        if let field = architecture.exitReasonField, architecture.hasExitReasonChildren {
            filters["kvm_exit"] = (field, architecture.exitReasons)
        }
        return filters
    }

    /// Every field: the kvm tracepoints and their children, read from tracefs alone.
    static func fieldNames(_ configuration: SourceConfiguration) throws(SourceError) -> [String] {
        let directory = configuration.paths.kvmEvents
        let entries: [FileSystem.DirectoryEntry]
        do { entries = try FileSystem.listDirectory(directory) } catch {
            throw SourceError("cannot list tracepoints in \(directory)", errno: error)
        }
        let filters = childFilters(configuration.architecture)
        var all = entries.filter(\.isDirectory).map(\.name)
        for tracepoint in all {
            guard let (_, reasons) = filters[tracepoint] else { continue }
            all += reasons.map { "\(tracepoint)(\($0.name))" }
        }
        // A crafted tracefs may hold a directory named like a child (`kvm_exit(HLT)`): one
        // field of each name.
        var unique = Set<String>()
        return all.filter { unique.insert($0).inserted }
    }

    func onlineCPUs() throws(SourceError) -> [Int] {
        let path = paths.sys + "/devices/system/cpu/online"
        guard let text = try? FileSystem.readText(path), let cpus = Self.parseCPUList(text) else {
            throw SourceError("cannot read the online CPUs from \(path)")
        }
        return cpus
    }

    /// `0-3,8,10-11` → [0, 1, 2, 3, 8, 10, 11].
    public static func parseCPUList(_ text: String) -> [Int]? {
        var cpus: [Int] = []
        for member in text.trimmingBlanks().split(separator: ",") {
            let bounds = member.split(separator: "-", omittingEmptySubsequences: false)
            guard let first = Int(bounds[0]) else { return nil }
            if bounds.count == 1 {
                cpus.append(first)
            } else if bounds.count == 2, let last = Int(bounds[1]), last >= first {
                cpus.append(contentsOf: first...last)
            } else {
                return nil
            }
        }
        return cpus.isEmpty ? nil : cpus
    }
}
