import CZlib
import KVMCore

/// gzip (RFC 1952) through the system's zlib: the endpoint compresses each sample's
/// exposition once and serves the bytes to every scrape that accepts gzip.
enum Gzip {
    /// zlib's fastest: each sample's exposition is compressed on the sampling thread whether
    /// or not a scrape comes for it, and at 500 guests (13.5 MB) level 6 took 184 ms of a
    /// sample's 430 and level 1 about half that, for 989 KB instead of 818 KB.
    static let level: Int32 = 1

    /// `bytes` compressed; nil when zlib fails (the answer then goes uncompressed).
    static func compress(_ bytes: [UInt8]) -> [UInt8]? {
        guard let stream = GzipStream() else { return nil }
        bytes.withUnsafeBytes { stream.add($0) }
        return stream.finish()
    }

    /// Whether an `Accept-Encoding` value takes gzip (RFC 9110 §12.5.3: `gzip`, `x-gzip` or
    /// `*`, with a weight above 0).
    static func accepted(by header: String?) -> Bool {
        guard let header else { return false }
        for item in header.split(separator: ",") {
            let parts = item.split(separator: ";").map { String($0).trimmingBlanks().lowercased() }
            guard let coding = parts.first, coding == "gzip" || coding == "x-gzip" || coding == "*" else { continue }
            let weight = parts.dropFirst().first { $0.hasPrefix("q=") }.flatMap { Double($0.dropFirst(2)) } ?? 1
            if weight > 0 { return true }
        }
        return false
    }
}

/// A gzip made from pieces as they come (a format's exposition, family by family): a big
/// host's plain text (13.5 MB at 500 guests) is never whole in memory when only its gzip (1 MB)
/// is wanted. Pieces are gathered up to `stageSize` before zlib sees them (a family's header
/// is a few dozen bytes). The CPU time zlib took is kept, for kvmstat's own metrics.
final class GzipStream {
    static let stageSize = 1 << 18
    /// zlib's state points back at its `z_stream`: it must not move, so it lives here.
    private let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
    private var staged: [UInt8] = []
    private var chunk = [UInt8](repeating: 0, count: 1 << 16)
    private var output: [UInt8] = []
    private var failed = false
    /// The thread CPU time zlib took so far.
    private(set) var seconds = 0.0

    /// nil when zlib cannot start one. `expectedSize`: about how long the gzip will be (the
    /// last sample's), room made for it at once: an output grown by doubling held twice its
    /// size, and a copy of it, at the moment a big host's sample was largest in memory.
    init?(level: Int32 = Gzip.level, expectedSize: Int = 0) {
        stream.initialize(to: z_stream())
        // windowBits 15 + 16: a gzip header and trailer, not zlib's.
        guard deflateInit2_(stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY, zlibVersion(),
                            Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            stream.deinitialize(count: 1)
            stream.deallocate()
            return nil
        }
        staged.reserveCapacity(Self.stageSize)
        if expectedSize > 0 { output.reserveCapacity(expectedSize + expectedSize / 8) }
    }

    deinit {
        deflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
    }

    /// Takes the next piece.
    func add(_ bytes: UnsafeRawBufferPointer) {
        if staged.count + bytes.count > Self.stageSize { feedStaged(finish: false) }
        if bytes.count >= Self.stageSize {
            // zlib counts in 32 bits: a piece of gigabytes goes in parts.
            var offset = 0
            while offset < bytes.count {
                let part = min(bytes.count - offset, 1 << 30)
                feed(UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + part]), finish: false)
                offset += part
            }
        } else {
            staged.append(contentsOf: bytes)
        }
    }

    /// The gzip of every piece taken; nil when zlib failed on any. Ends the stream (nothing
    /// is taken after).
    func finish() -> [UInt8]? {
        feedStaged(finish: true)
        guard !failed else { return nil }
        // No more than an eighth of slack is kept under the answer (the room made from a
        // guess, or from growing): else exactly its bytes.
        return output.capacity - output.count <= output.count / 8 ? output : output.withUnsafeBufferPointer { [UInt8]($0) }
    }

    private func feedStaged(finish: Bool) {
        staged.withUnsafeBytes { feed($0, finish: finish) }
        staged.removeAll(keepingCapacity: true)
    }

    private func feed(_ input: UnsafeRawBufferPointer, finish: Bool) {
        guard !failed else { return }
        let start = Signals.threadCPUNow()
        defer { seconds += Signals.threadCPUNow() - start }
        stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: UInt8.self))
        stream.pointee.avail_in = uInt(input.count)
        while true {
            let result: Int32 = chunk.withUnsafeMutableBufferPointer { out in
                stream.pointee.next_out = out.baseAddress
                stream.pointee.avail_out = uInt(out.count)
                return deflate(stream, finish ? Z_FINISH : Z_NO_FLUSH)
            }
            output.append(contentsOf: chunk[..<(chunk.count - Int(stream.pointee.avail_out))])
            if result == Z_STREAM_END { return }
            // Z_BUF_ERROR is "no progress possible": all input taken, nothing pending.
            if result == Z_BUF_ERROR && !finish { return }
            guard result == Z_OK else {
                failed = true
                return
            }
            // Done with this input once zlib left room in the chunk (nothing more pending);
            // finishing goes on until the stream ends.
            if !finish && stream.pointee.avail_out > 0 && stream.pointee.avail_in == 0 { return }
        }
    }
}
