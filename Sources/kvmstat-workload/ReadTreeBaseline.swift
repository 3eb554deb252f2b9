#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The benchmark's yardstick for the debugfs source: list `<dir>`'s VM directories and open,
/// read and close every file in them, `passes` times, as a C loop would; prints the CPU time
/// per pass in milliseconds.
enum ReadTreeBaseline {
    static func run(directory: String, passes: Int) -> Never {
        var buffer = [UInt8](repeating: 0, count: 64)
        var files = 0
        let start = cpuSeconds()
        for _ in 0..<passes {
            files = 0
            guard let top = opendir(directory) else { exit(1) }
            while let entry = readdir(top) {
                guard entry.pointee.d_type == UInt8(DT_DIR) else { continue }
                let vm = withUnsafePointer(to: &entry.pointee.d_name) {
                    $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
                }
                if vm.hasPrefix(".") { continue }
                let vmPath = directory + "/" + vm
                guard let inner = opendir(vmPath) else { continue }
                let vmFD = dirfd(inner)
                while let file = readdir(inner) {
                    guard file.pointee.d_type == UInt8(DT_REG) else { continue }
                    let fd = withUnsafePointer(to: &file.pointee.d_name) {
                        $0.withMemoryRebound(to: CChar.self, capacity: 256) { openat(vmFD, $0, O_RDONLY) }
                    }
                    if fd >= 0 {
                        _ = read(fd, &buffer, buffer.count)
                        close(fd)
                    }
                    files += 1
                }
                closedir(inner)
            }
            closedir(top)
        }
        let perPass = (cpuSeconds() - start) / Double(passes) * 1000
        print("baseline_ms_per_pass \(perPass) files \(files)")
        exit(0)
    }

    static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
            + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }
}
