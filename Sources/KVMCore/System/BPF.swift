#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CKVMSyscalls

/// bpf(2), as thin typed calls: create a map, load a program, and a map's elements by key.
/// The syscall number is the architecture's (`Architecture.bpfSyscall`); `union bpf_attr` is
/// laid out here by offset, zero beyond what each command uses, as the kernel requires.
public struct BPFSystem: Sendable {
    public let syscallNumber: Int

    public init(syscallNumber: Int) { self.syscallNumber = syscallNumber }

    public enum MapType: UInt32, Sendable {
        case hash = 1
        case array = 2
    }

    /// BPF_PROG_TYPE_TRACEPOINT: a program run on a tracepoint's hit, its context the record.
    public static let tracepointProgram: UInt32 = 5

    /// Flags of an element update.
    public static let updateAny: UInt64 = 0
    public static let updateOnlyNew: UInt64 = 1

    private enum Command: Int32 {
        case mapCreate = 0, mapLookupElem = 1, mapUpdateElem = 2, mapDeleteElem = 3, mapGetNextKey = 4
        case progLoad = 5
        case mapLookupBatch = 24
        case linkCreate = 28
    }

    /// BPF_PERF_EVENT: a link from a program to a perf event.
    private static let perfEventAttach: UInt32 = 41

    /// `union bpf_attr` is 144 bytes on current kernels; a smaller kernel accepts a larger
    /// attribute as long as the bytes it does not know are zero.
    private static let attrSize = 144

    private func call(_ command: Command, _ fill: (UnsafeMutableRawBufferPointer) -> Void) throws(Errno) -> Int {
        let result = rawCall(command, fill)
        guard result >= 0 else { throw Errno.current }
        return result
    }

    /// The call itself: its result, errno set when negative.
    private func rawCall(_ command: Command, _ fill: (UnsafeMutableRawBufferPointer) -> Void) -> Int {
        var attr = [UInt8](repeating: 0, count: Self.attrSize)
        return attr.withUnsafeMutableBytes { raw -> Int in
            fill(raw)
            return ckvm_bpf(syscallNumber, command.rawValue, raw.baseAddress, UInt32(raw.count))
        }
    }

    /// A map of `maxEntries` elements of `keySize` + `valueSize` bytes.
    /// With `noPrealloc` (a hash map), elements are allocated as keys come, not all at once.
    public func createMap(_ type: MapType, keySize: Int, valueSize: Int, maxEntries: Int, name: String,
                          noPrealloc: Bool = false) throws(Errno) -> FileDescriptor
    {
        let fd = try call(.mapCreate) { raw in
            raw.storeBytes(of: type.rawValue, toByteOffset: 0, as: UInt32.self)
            raw.storeBytes(of: UInt32(keySize), toByteOffset: 4, as: UInt32.self)
            raw.storeBytes(of: UInt32(valueSize), toByteOffset: 8, as: UInt32.self)
            raw.storeBytes(of: UInt32(maxEntries), toByteOffset: 12, as: UInt32.self)
            // map_flags: BPF_F_NO_PREALLOC.
            raw.storeBytes(of: UInt32(noPrealloc ? 1 : 0), toByteOffset: 16, as: UInt32.self)
            // map_name (offset 28, 16 bytes with its NUL): what bpftool shows.
            for (i, byte) in name.utf8.prefix(15).enumerated() { raw[28 + i] = byte }
        }
        return FileDescriptor(rawValue: Int32(fd))
    }

    /// Loads a program; on failure the verifier's words are in `log` when one is given.
    public func loadProgram(type: UInt32, _ instructions: [BPFInstruction], name: String,
                            log: UnsafeMutableBufferPointer<UInt8>? = nil) throws(Errno) -> FileDescriptor
    {
        let license = Array("GPL".utf8CString)
        let fd = instructions.withUnsafeBytes { code in
            license.withUnsafeBytes { licenseBytes in
                rawCall(.progLoad) { raw in
                    raw.storeBytes(of: type, toByteOffset: 0, as: UInt32.self)
                    raw.storeBytes(of: UInt32(instructions.count), toByteOffset: 4, as: UInt32.self)
                    raw.storeBytes(of: UInt64(UInt(bitPattern: code.baseAddress)), toByteOffset: 8, as: UInt64.self)
                    raw.storeBytes(of: UInt64(UInt(bitPattern: licenseBytes.baseAddress)), toByteOffset: 16,
                                   as: UInt64.self)
                    if let log, log.count > 0 {
                        log[0] = 0
                        raw.storeBytes(of: UInt32(1), toByteOffset: 24, as: UInt32.self)
                        raw.storeBytes(of: UInt32(log.count), toByteOffset: 28, as: UInt32.self)
                        raw.storeBytes(of: UInt64(UInt(bitPattern: log.baseAddress)), toByteOffset: 32,
                                       as: UInt64.self)
                    }
                    // prog_name (offset 48, 16 bytes with its NUL).
                    for (i, byte) in name.utf8.prefix(15).enumerated() { raw[48 + i] = byte }
                }
            }
        }
        guard fd >= 0 else { throw Errno.current }
        return FileDescriptor(rawValue: Int32(fd))
    }

    /// Links `program` to the tracepoint perf event `perfEvent`, the program's
    /// `bpf_get_attach_cookie` then giving `cookie` (Linux 5.15). Closing the link detaches.
    /// One program linked to many events with a cookie each is loaded, and verified, once.
    public func linkPerfEvent(program: FileDescriptor, perfEvent: FileDescriptor, cookie: UInt64) throws(Errno)
        -> FileDescriptor
    {
        let fd = try call(.linkCreate) { raw in
            raw.storeBytes(of: UInt32(bitPattern: program.rawValue), toByteOffset: 0, as: UInt32.self)
            raw.storeBytes(of: UInt32(bitPattern: perfEvent.rawValue), toByteOffset: 4, as: UInt32.self)
            raw.storeBytes(of: Self.perfEventAttach, toByteOffset: 8, as: UInt32.self)
            // link_create.perf_event.bpf_cookie, after prog_fd, target_fd, attach_type, flags.
            raw.storeBytes(of: cookie, toByteOffset: 16, as: UInt64.self)
        }
        return FileDescriptor(rawValue: Int32(fd))
    }

    private func element(_ command: Command, map: FileDescriptor, key: UnsafeRawPointer?,
                         value: UnsafeRawPointer?, flags: UInt64 = 0) throws(Errno) {
        _ = try call(command) { raw in
            raw.storeBytes(of: UInt32(bitPattern: map.rawValue), toByteOffset: 0, as: UInt32.self)
            raw.storeBytes(of: UInt64(UInt(bitPattern: key)), toByteOffset: 8, as: UInt64.self)
            raw.storeBytes(of: UInt64(UInt(bitPattern: value)), toByteOffset: 16, as: UInt64.self)
            raw.storeBytes(of: flags, toByteOffset: 24, as: UInt64.self)
        }
    }

    /// The value of `key` into `value`; false when the map has no such key.
    public func lookup(_ map: FileDescriptor, key: UnsafeRawPointer, into value: UnsafeMutableRawPointer) throws(Errno)
        -> Bool
    {
        do throws(Errno) {
            try element(.mapLookupElem, map: map, key: key, value: value)
            return true
        } catch where error.rawValue == ENOENT {
            return false
        }
    }

    public func update(_ map: FileDescriptor, key: UnsafeRawPointer, value: UnsafeRawPointer,
                       flags: UInt64 = updateAny) throws(Errno) {
        try element(.mapUpdateElem, map: map, key: key, value: value, flags: flags)
    }

    /// Removes `key`; false when it was not there.
    @discardableResult
    public func delete(_ map: FileDescriptor, key: UnsafeRawPointer) throws(Errno) -> Bool {
        do throws(Errno) {
            try element(.mapDeleteElem, map: map, key: key, value: nil)
            return true
        } catch where error.rawValue == ENOENT {
            return false
        }
    }

    /// Every element of `map`, `keySize` + `valueSize` bytes each, in as few calls as the
    /// kernel allows (BPF_MAP_LOOKUP_BATCH, Linux 5.6: up to `batch` elements a call); nil
    /// when the kernel has no batch lookup for this map (read it key by key instead).
    private func lookupAll(_ map: FileDescriptor, keySize: Int, valueSize: Int, batch: Int = 4096) throws(Errno)
        -> (keys: [UInt8], values: [UInt8], count: Int)?
    {
        var keys = [UInt8](repeating: 0, count: keySize * batch)
        var values = [UInt8](repeating: 0, count: valueSize * batch)
        var allKeys: [UInt8] = []
        var allValues: [UInt8] = []
        var total = 0
        // The kernel's position between calls (a bucket number for hash maps).
        var tokens = [UInt64](repeating: 0, count: 4)
        var first = true
        while true {
            var copied = 0
            let result = keys.withUnsafeMutableBytes { keyBytes in
                values.withUnsafeMutableBytes { valueBytes in
                    tokens.withUnsafeMutableBufferPointer { token in
                        var attr = [UInt8](repeating: 0, count: Self.attrSize)
                        return attr.withUnsafeMutableBytes { raw -> Int in
                            let inToken = UInt64(UInt(bitPattern: token.baseAddress))
                            let outToken = UInt64(UInt(bitPattern: token.baseAddress! + 2))
                            raw.storeBytes(of: first ? 0 : inToken, toByteOffset: 0, as: UInt64.self)
                            raw.storeBytes(of: outToken, toByteOffset: 8, as: UInt64.self)
                            raw.storeBytes(of: UInt64(UInt(bitPattern: keyBytes.baseAddress)), toByteOffset: 16,
                                           as: UInt64.self)
                            raw.storeBytes(of: UInt64(UInt(bitPattern: valueBytes.baseAddress)), toByteOffset: 24,
                                           as: UInt64.self)
                            raw.storeBytes(of: UInt32(batch), toByteOffset: 32, as: UInt32.self)
                            raw.storeBytes(of: UInt32(bitPattern: map.rawValue), toByteOffset: 36, as: UInt32.self)
                            let result = ckvm_bpf(syscallNumber, Command.mapLookupBatch.rawValue, raw.baseAddress,
                                                  UInt32(raw.count))
                            copied = Int(raw.load(fromByteOffset: 32, as: UInt32.self))
                            return result
                        }
                    }
                }
            }
            let failure = result < 0 ? errno : 0
            if failure == EINVAL || failure == ENOTSUP || failure == 524 /* ENOTSUPP */ { return nil }
            if result < 0 && failure != ENOENT { throw Errno(rawValue: failure) }
            if copied > 0 {
                allKeys += keys[0..<(copied * keySize)]
                allValues += values[0..<(copied * valueSize)]
                total += copied
            }
            // ENOENT: the last elements were in this call.
            if result < 0 { return (allKeys, allValues, total) }
            tokens[0] = tokens[2]
            tokens[1] = tokens[3]
            first = false
        }
    }

    /// Every element of `map` as `lookupAll` gives them, or key by key where the kernel has
    /// no batch lookup (`batched` is then false, and stays so for the next calls).
    public func elements(_ map: FileDescriptor, keySize: Int, valueSize: Int, batched: inout Bool) throws(Errno)
        -> (keys: [UInt8], values: [UInt8], count: Int)
    {
        if batched, let all = try lookupAll(map, keySize: keySize, valueSize: valueSize) { return all }
        batched = false
        var keys: [UInt8] = []
        var values: [UInt8] = []
        let key = UnsafeMutableRawBufferPointer.allocate(byteCount: keySize, alignment: 8)
        let next = UnsafeMutableRawBufferPointer.allocate(byteCount: keySize, alignment: 8)
        let value = UnsafeMutableRawBufferPointer.allocate(byteCount: valueSize, alignment: 8)
        defer {
            key.deallocate()
            next.deallocate()
            value.deallocate()
        }
        var first = true
        while try nextKey(map, after: first ? nil : UnsafeRawPointer(key.baseAddress!), into: next.baseAddress!) {
            first = false
            key.copyMemory(from: UnsafeRawBufferPointer(next))
            // A key deleted between the two calls (its thread's exit, by the kernel) is skipped.
            if try lookup(map, key: key.baseAddress!, into: value.baseAddress!) {
                keys += key
                values += value
            }
        }
        return (keys, values, values.count / max(valueSize, 1))
    }

    /// The key after `key` (the first with nil) into `next`; false after the last.
    public func nextKey(_ map: FileDescriptor, after key: UnsafeRawPointer?, into next: UnsafeMutableRawPointer)
        throws(Errno) -> Bool
    {
        do throws(Errno) {
            try element(.mapGetNextKey, map: map, key: key, value: next)
            return true
        } catch where error.rawValue == ENOENT {
            return false
        }
    }
}
