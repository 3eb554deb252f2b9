import KVMCore

/// What the debugfs source knows of one VM directory while it exists, beside its counts
/// (which are in the source's `CounterBook`, under its serial number).
struct DebugfsVM {
    /// The directory's inode: the same `PID-FD` name with another inode is another VM.
    let inode: UInt64
    /// `<name>/` as bytes, the prefix of its files' paths relative to the kvm directory.
    let pathPrefix: [UInt8]
    /// The guest's pid, from the directory's name.
    let guestPid: Int
    /// Its member number in the source's book: one per VM ever seen.
    let serial: Int
    /// The sample that last listed it; older means the VM went away.
    var generation = 0

    init(name: String, inode: UInt64, serial: Int) {
        self.inode = inode
        self.serial = serial
        pathPrefix = Array(name.utf8) + [UInt8(ascii: "/")]
        guestPid = Int(name.prefix { $0 != "-" }) ?? 0
    }
}

/// One reading of a statistics file.
enum DebugfsReading {
    case value(UInt64)
    /// EPERM/EACCES: the kernel refuses it (lockdown).
    case denied
    /// Gone (the VM went away mid-sample) or not a regular file.
    case missing
    /// Holds no number a u64 can hold.
    case malformed
}

/// Reads statistics files relative to a held kvm directory, building each path in a reused
/// buffer so the hot loop (VMs × fields a sample) allocates nothing.
final class DebugfsReader {
    private let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 8)
    private let pathBuffer = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: 4096)

    deinit {
        scratch.deallocate()
        pathBuffer.deallocate()
    }

    /// Opens, reads and closes `<prefix><name>` relative to `directory`: non-blocking and
    /// not through a symbolic link, so a FIFO, device or link where a statistics file should
    /// be is read as nothing (or refused), never waited on.
    func read(_ name: [CChar], prefix: [UInt8], in directory: FileDescriptor) -> DebugfsReading {
        guard prefix.count + name.count < pathBuffer.count else { return .missing }
        prefix.withUnsafeBufferPointer { bytes in
            _ = UnsafeMutableBufferPointer(rebasing: pathBuffer[0..<bytes.count]).initialize(from: bytes)
        }
        name.withUnsafeBufferPointer { bytes in
            bytes.withMemoryRebound(to: UInt8.self) { bytes in
                _ = UnsafeMutableBufferPointer(rebasing: pathBuffer[prefix.count..<(prefix.count + bytes.count)])
                    .initialize(from: bytes)
            }
        }
        let fd: FileDescriptor
        do {
            fd = try pathBuffer.withMemoryRebound(to: CChar.self) { (path) throws(Errno) in
                try FileDescriptor.open(path.baseAddress!, relativeTo: directory, [.nonBlocking, .noFollow])
            }
        } catch {
            return error == .notPermitted || error == .permissionDenied ? .denied : .missing
        }
        defer { fd.close() }
        do throws(Errno) {
            guard let value = try fd.readLeadingUInt64(scratch: scratch) else { return .malformed }
            return .value(value)
        } catch {
            return error == .notPermitted || error == .permissionDenied ? .denied : .missing
        }
    }
}
