#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMWorkload

/// The benchmark's churn: VMs by the thousand that come and go while kvmstat watches, so its
/// memory and CPU per sample can be seen to stay flat.
enum Churn {
    /// Creates and removes `count` VM directories in the fake kvm directory `directory` over
    /// `seconds`, 20 alive at a time, each with the kvm directory's own files. Their pids
    /// (4,000,000 and up) belong to no process, as those of guests that have ended.
    static func fakeTree(directory: String, count: Int, seconds: Double) -> Never {
        var fields: [String] = []
        if let dir = opendir(directory) {
            while let entry = readdir(dir) {
                guard entry.pointee.d_type == UInt8(DT_REG) else { continue }
                fields.append(withUnsafePointer(to: &entry.pointee.d_name) {
                    $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
                })
            }
            closedir(dir)
        }
        let start = now()
        var alive: [String] = []
        for i in 0..<count {
            let vm = "\(directory)/\(4_000_000 + i)-\(i % 1000)"
            mkdir(vm, 0o755)
            for field in fields {
                let fd = open(vm + "/" + field, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
                let text = "\(i)\n"
                _ = text.withCString { write(fd, $0, strlen($0)) }
                close(fd)
            }
            alive.append(vm)
            if alive.count > 20 { remove(alive.removeFirst(), fields) }
            // Keep to the rate: i VMs by i/count of the time.
            let due = start + seconds * Double(i + 1) / Double(count)
            let wait = due - now()
            if wait > 0 { usleep(UInt32(wait * 1_000_000)) }
        }
        for vm in alive { remove(vm, fields) }
        print("done \(count)")
        exit(0)
    }

    /// Creates and destroys `count` real VMs with one vCPU thread each, one after another,
    /// each running its loop once.
    static func realVMs(count: Int, iterations: Int) -> Never {
        let workload = Workload(iterations: iterations)
        do {
            for _ in 0..<count {
                try workload.addVMs(1, vcpus: 1)
                try workload.runAll()
                workload.destroyLastVM()
            }
        } catch {
            print("kvmstat-workload: \(error)")
            exit(1)
        }
        print("done \(count)")
        exit(0)
    }

    private static func remove(_ vm: String, _ fields: [String]) {
        for field in fields { unlink(vm + "/" + field) }
        rmdir(vm)
    }

    private static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
