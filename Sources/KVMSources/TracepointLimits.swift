import KVMCore

/// What the kernel refuses when kvmstat opens many perf events, in words for the operator:
/// missing privilege, and the descriptor limit, which is raised as needed or named with a way
/// out (a narrower `-f`).
extension TracepointSource {
    func openError(_ error: Errno) -> SourceError {
        switch error {
        case .permissionDenied, .notPermitted:
            return SourceError("perf_event_open", errno: error, advice: "kvmstat needs CAP_SYS_ADMIN (root) or "
                + "/proc/sys/kernel/perf_event_paranoid < 1 to count tracepoints")
        case .tooManyOpenFiles, .tooManyOpenFilesInSystem:
            return SourceError("perf_event_open", errno: error, advice: "\(openDescriptors + 50) open files "
                + "needed; raise the limit (ulimit -n) or use a narrower -f filter")
        default:
            return SourceError("perf_event_open", errno: error)
        }
    }

    func raiseDescriptorLimit(adding count: Int) throws(SourceError) {
        // Headroom for the standard streams, debugfs reads and log files, as upstream keeps.
        let needed = openDescriptors + count + 50
        guard ResourceLimits.openFilesSoftLimit() < needed else { return }
        do throws(Errno) { try ResourceLimits.ensureOpenFiles(needed) } catch {
            // Root without CAP_SYS_RESOURCE (a container) cannot raise the hard limit either.
            let who = ResourceLimits.runningAsRoot
                ? "kvmstat lacks CAP_SYS_RESOURCE to raise the hard limit (a container?); raise it "
                    + "where kvmstat is started (ulimit -Hn, LimitNOFILE=)"
                : "run as root or raise the hard limit (ulimit -Hn)"
            throw SourceError("NOFILE rlimit could not be raised to \(needed)", errno: error,
                              advice: who + ", or count fewer events with a narrower -f filter")
        }
    }
}
