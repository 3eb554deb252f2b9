import KVMCore

/// `-p`/`-g` through the watched process's cgroup: when the process is alone in its cgroup v2
/// group (as libvirt and systemd place guests), one group per CPU counts every task of the
/// cgroup (PERF_FLAG_PID_CGROUP), instead of one group per thread. That is exact from the
/// first event of a thread started later, with no rescan, and needs CPUs × fields events
/// instead of threads × fields; so it is chosen when the CPUs are no more than the threads.
/// Elsewhere (other processes in the cgroup, no cgroup v2, a kernel that refuses) kvmstat
/// counts per thread, as before; `--verbose` says which and why.
extension TracepointSource {
    /// Sets up cgroup counting for `pid` if it is alone in its cgroup and that needs fewer
    /// events; false (with a note why) when per-thread counting applies.
    func countThroughCGroup() throws(SourceError) -> Bool {
        // Nothing wanted: per-thread counting opens groups when a filter wants something.
        guard !wanted.isEmpty else { return false }
        let threads = (try? FileSystem.numericEntries("\(paths.proc)/\(pid)/task"))?.count ?? 0
        guard let cgroup = CGroup.of(pid: pid, paths: paths) else {
            notes.append("tracepoint: -p \(pid): one group per thread (\(threads) threads): "
                + (paths.cgroup2 == nil ? "no cgroup v2 hierarchy is mounted" : "its cgroup v2 group is unknown"))
            return false
        }
        guard cgroup.holdsOnly(pid: pid, proc: paths.proc) else {
            notes.append("tracepoint: -p \(pid): one group per thread (\(threads) threads): its cgroup "
                + "\(cgroup.path) holds other processes too")
            return false
        }
        let cpus = try onlineCPUs()
        guard cpus.count <= threads else {
            notes.append("tracepoint: -p \(pid): one group per thread: \(threads) threads need fewer events "
                + "than \(cpus.count) CPUs through its cgroup \(cgroup.path)")
            return false
        }
        let directory: FileDescriptor
        do throws(Errno) { directory = try FileDescriptor.open(cgroup.directory, .directory) } catch {
            notes.append("tracepoint: -p \(pid): one group per thread: cannot open \(cgroup.directory): \(error)")
            return false
        }
        // The events hold the cgroup themselves: the directory is not needed once they exist.
        defer { directory.close() }
        let started = Signals.monotonicNow()
        do {
            try addGroups(cpus.map { (pid: directory.rawValue, cpu: Int32($0)) }, cgroup: true)
        } catch {
            if let errno = error.errno, errno == .tooManyOpenFiles || errno == .tooManyOpenFilesInSystem {
                throw error
            }
            // A kernel without cgroup perf events (CONFIG_CGROUP_PERF off) says EINVAL or
            // EOPNOTSUPP, CPU-wide events may need more privilege than per-thread ones
            // (perf_event_paranoid), the cgroup may have gone: count per thread.
            rebuildWithoutCGroup()
            notes.append("tracepoint: -p \(pid): one group per thread (\(threads) threads): the kernel "
                + "refused cgroup events (\(error))")
            return false
        }
        watchedCGroup = cgroup
        let milliseconds = Int(((Signals.monotonicNow() - started) * 1000).rounded())
        notes.append("tracepoint: -p \(pid): through its cgroup \(cgroup.path): one group per CPU "
            + "(\(cpus.count) CPUs) instead of one per thread (\(threads) threads); "
            + "\(openDescriptors) events opened in \(milliseconds) ms")
        return true
    }

    /// Each sample: threads of a process counted per thread are followed; a cgroup that
    /// another process joined no longer counts the watched process alone, so its groups are
    /// retired (their counts kept) and counting goes on per thread.
    func followWatchedProcess() throws(SourceError) {
        guard let cgroup = watchedCGroup else { return try followThreads() }
        guard !cgroup.stillOnly(pid: pid) else { return }
        watchedCGroup = nil
        retireGroups { _ in true }
        warnings.append("tracepoint: another process joined cgroup \(cgroup.path) of pid \(pid); "
            + "counting its threads from now on (counts so far kept)")
        try followThreads()
    }

    private func rebuildWithoutCGroup() {
        retireGroups { _ in true }
        resetRetired()
    }
}
