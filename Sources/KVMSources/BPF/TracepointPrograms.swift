#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMCore

/// The bpf source's programs on KVM's tracepoints, and the descriptors that keep them there.
/// Counting: one program serves every tracepoint whose reason field (if any) has the same
/// offset and size, linked to each tracepoint's perf event with the event number as its attach
/// cookie (Linux 5.15): a few verifier passes, not one per tracepoint. Where the kernel has no
/// cookies, one program per tracepoint with its event number a constant: a tracepoint program
/// cannot read its record's type (`common_type`), as the kernel keeps a pointer to the
/// registers in the record's first 8 bytes. Each perf event is `pid -1, cpu 0`, which runs
/// the program on every CPU.
final class TracepointPrograms {
    private let catalog: TracepointCatalog
    private let bpf: BPFSystem
    private let architecture: any Architecture
    private let counts: FileDescriptor
    private let dropped: FileDescriptor
    /// Counted tracepoints: the perf event's and the link's (or program's) descriptors.
    private var attached: [String: [FileDescriptor]] = [:]
    /// Counting programs shared through attach cookies, by reason field layout.
    private var sharedPrograms: [String: FileDescriptor] = [:]
    /// Whether this kernel links programs to perf events with a cookie (until it says not).
    private var cookies = true

    init(catalog: TracepointCatalog, bpf: BPFSystem, architecture: any Architecture, counts: FileDescriptor,
         dropped: FileDescriptor) {
        self.catalog = catalog
        self.bpf = bpf
        self.architecture = architecture
        self.counts = counts
        self.dropped = dropped
    }

    /// Counts `tracepoint`'s hits as event `event` (once: a tracepoint counted stays).
    func count(_ tracepoint: String, event: UInt32) throws(SourceError) {
        guard attached[tracepoint] == nil, catalog.tracepointID(tracepoint) != nil else { return }
        var reason: TracepointFormat.Field?
        if let reasonName = catalog.reasonField(of: tracepoint) {
            let directory = catalog.directory(of: tracepoint)
            guard let field = TracepointFormat.read(directory)?.fields[reasonName] else {
                throw SourceError("the bpf source cannot count \(tracepoint): its format in \(directory) "
                    + "has no field '\(reasonName)'")
            }
            reason = field
        }
        let tooWide = SourceError("the bpf source cannot count \(tracepoint): its field "
            + "'\(catalog.reasonField(of: tracepoint) ?? "")' is \(reason?.size ?? 0) bytes wide")
        if cookies, let linked = try countShared(tracepoint, event: event, reason: reason, tooWide: tooWide) {
            attached[tracepoint] = linked
            return
        }
        guard let code = CountingProgram.instructions(event: .constant(event), reason: reason, counts: counts,
                                                      dropped: dropped)
        else { throw tooWide }
        attached[tracepoint] = try attach(code, to: tracepoint, name: "kvmstat_count")
    }

    /// `tracepoint` counted by the shared program of its reason layout, linked with its event
    /// number as cookie: the perf event's and the link's descriptors; nil (and `cookies`
    /// false from then on) when the kernel has no attach cookies.
    private func countShared(_ tracepoint: String, event: UInt32, reason: TracepointFormat.Field?,
                             tooWide: SourceError) throws(SourceError) -> [FileDescriptor]? {
        let layout = reason.map { "\($0.offset):\($0.size)" } ?? "-"
        let program: FileDescriptor
        if let shared = sharedPrograms[layout] {
            program = shared
        } else {
            guard let code = CountingProgram.instructions(event: .cookie, reason: reason, counts: counts,
                                                          dropped: dropped)
            else { throw tooWide }
            // A kernel before 5.15 knows no bpf_get_attach_cookie: the verifier says EINVAL.
            guard let loaded = try load(code, name: "kvmstat_count", for: "its counting program",
                                        invalidMeansUnsupported: true) else {
                cookies = false
                return nil
            }
            program = loaded
            sharedPrograms[layout] = program
        }
        let perfEvent = try open(tracepoint)
        do throws(Errno) {
            return [perfEvent, try bpf.linkPerfEvent(program: program, perfEvent: perfEvent, cookie: UInt64(event))]
        } catch {
            perfEvent.close()
            guard error == .invalidArgument || error.rawValue == EOPNOTSUPP || error.rawValue == 524 else {
                throw BPFSource.failure("link its program to \(tracepoint)", error)
            }
            cookies = false
            return nil
        }
    }

    /// Loads `code` (the verifier's last words in the error when it refuses); nil for EINVAL
    /// when `invalidMeansUnsupported`.
    private func load(_ code: [BPFInstruction], name: String, for what: String,
                      invalidMeansUnsupported: Bool = false) throws(SourceError) -> FileDescriptor? {
        let log = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: 16_384)
        defer { log.deallocate() }
        do throws(Errno) {
            return try bpf.loadProgram(type: BPFSystem.tracepointProgram, code, name: name, log: log)
        } catch {
            if invalidMeansUnsupported && error == .invalidArgument { return nil }
            // The verifier's last words: where it stopped and why.
            let lines = String(decoding: log.prefix { $0 != 0 }, as: UTF8.self).split(separator: "\n")
            let words = lines.isEmpty ? "" : " (verifier: " + lines.suffix(3).joined(separator: " / ") + ")"
            throw BPFSource.failure("load \(what)\(words)", error)
        }
    }

    /// One perf event on `tracepoint` (pid -1, cpu 0: a program attached runs on every CPU).
    private func open(_ tracepoint: String) throws(SourceError) -> FileDescriptor {
        guard let id = catalog.tracepointID(tracepoint) else {
            throw SourceError("the bpf source cannot attach to \(tracepoint): tracefs has no such tracepoint")
        }
        do throws(Errno) {
            return try PerfEvent.openTracepoint(id: id, pid: -1, cpu: 0, group: nil,
                                                syscallNumber: architecture.perfEventOpenSyscall)
        } catch {
            throw BPFSource.failure("open tracepoint \(tracepoint)", error)
        }
    }

    /// Program `code` on `tracepoint` (a counting program without cookies, a latency
    /// timer's): its program's and perf event's descriptors.
    func attach(_ code: [BPFInstruction], to tracepoint: String, name: String) throws(SourceError) -> [FileDescriptor] {
        guard let program = try load(code, name: name, for: "its program for \(tracepoint)") else { return [] }
        do throws(SourceError) {
            let perfEvent = try open(tracepoint)
            do throws(Errno) {
                try PerfEvent.attach(program: program, to: perfEvent, request: architecture.perfIoctls.setBPF)
            } catch {
                perfEvent.close()
                throw BPFSource.failure("attach its program to \(tracepoint)", error)
            }
            return [program, perfEvent]
        } catch {
            program.close()
            throw error
        }
    }

    /// What `--verbose` says of them.
    var note: String {
        cookies
            ? "bpf: \(attached.count) tracepoints counted by \(sharedPrograms.count) programs (linked with attach cookies); counts kept per thread in the kernel"
            : "bpf: \(attached.count) programs attached, one per counted tracepoint (this kernel has no attach cookies); counts kept per thread in the kernel"
    }

    /// Every descriptor, handed over (the caller closes them); none kept.
    func release() -> [FileDescriptor] {
        defer {
            attached.removeAll()
            sharedPrograms.removeAll()
        }
        return attached.values.flatMap { $0 } + sharedPrograms.values
    }
}
