#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMCore

/// The few calls of libvirt's C library (`libvirt.so.0`, Debian's `libvirt0`) the libvirt
/// source makes, loaded at run time so that kvmstat needs libvirt only when it is asked for.
/// Declarations follow libvirt's public headers (libvirt-host.h, libvirt-domain.h,
/// libvirt-common.h); libvirt keeps that ABI stable.
final class LibvirtAPI: @unchecked Sendable {
    typealias Connection = OpaquePointer

    private typealias OpenReadOnly = @convention(c) (UnsafePointer<CChar>?) -> OpaquePointer?
    private typealias CloseConnection = @convention(c) (OpaquePointer?) -> Int32
    private typealias IsAlive = @convention(c) (OpaquePointer?) -> Int32
    private typealias GetAllDomainStats = @convention(c) (
        OpaquePointer?, UInt32, UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutableRawPointer?>?>?, UInt32
    ) -> Int32
    private typealias RecordListFree = @convention(c) (UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Void
    private typealias DomainName = @convention(c) (OpaquePointer?) -> UnsafePointer<CChar>?
    private typealias DomainID = @convention(c) (OpaquePointer?) -> UInt32
    private typealias LastErrorMessage = @convention(c) () -> UnsafePointer<CChar>?
    private typealias ErrorHandler = @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Void
    private typealias SetErrorFunc = @convention(c) (UnsafeMutableRawPointer?, ErrorHandler?) -> Void

    /// The soname, or a replacement from `KVMSTAT_LIBVIRT_LIBRARY` (tests: a host without it).
    static var libraryPath: String {
        getenv("KVMSTAT_LIBVIRT_LIBRARY").map { String(cString: $0) } ?? "libvirt.so.0"
    }

    /// What to tell an operator whose host lacks the library.
    static let missingAdvice = "install the libvirt0 package (libvirt's client library)"

    private let openReadOnly: OpenReadOnly
    private let closeConnection: CloseConnection
    private let isAlive: IsAlive
    private let getAllDomainStats: GetAllDomainStats
    private let recordListFree: RecordListFree
    private let domainName: DomainName
    private let domainID: DomainID
    private let lastErrorMessage: LastErrorMessage

    /// libvirt's `VIR_DOMAIN_STATS_VCPU | VIR_DOMAIN_STATS_VM`.
    static let statsGroups: UInt32 = 1 << 3 | 1 << 10
    /// `VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE | _NOWAIT`: running domains, and no waiting
    /// for a domain's job lock (a domain busy with a migration is skipped, not waited for).
    static let statsFlags: UInt32 = 1 << 0 | 1 << 29

    private static let loaded: Result<LibvirtAPI, SharedLibrary.Failure> = {
        do throws(SharedLibrary.Failure) {
            return .success(try LibvirtAPI(library: SharedLibrary(libraryPath)))
        } catch {
            return .failure(error)
        }
    }()

    /// The library, loaded once; a failure says what is missing.
    static func load() throws(SharedLibrary.Failure) -> LibvirtAPI { try loaded.get() }

    private init(library: SharedLibrary) throws(SharedLibrary.Failure) {
        openReadOnly = try library.function("virConnectOpenReadOnly", as: OpenReadOnly.self)
        closeConnection = try library.function("virConnectClose", as: CloseConnection.self)
        isAlive = try library.function("virConnectIsAlive", as: IsAlive.self)
        getAllDomainStats = try library.function("virConnectGetAllDomainStats", as: GetAllDomainStats.self)
        recordListFree = try library.function("virDomainStatsRecordListFree", as: RecordListFree.self)
        domainName = try library.function("virDomainGetName", as: DomainName.self)
        domainID = try library.function("virDomainGetID", as: DomainID.self)
        lastErrorMessage = try library.function("virGetLastErrorMessage", as: LastErrorMessage.self)
        // libvirt prints every error on stderr unless a handler takes them; kvmstat reports
        // them itself, once.
        let setErrorFunc = try library.function("virSetErrorFunc", as: SetErrorFunc.self)
        setErrorFunc(nil, { _, _ in })
    }

    struct Failure: Error, Sendable, CustomStringConvertible {
        let description: String
    }

    private func failure() -> Failure {
        Failure(description: lastErrorMessage().map { String(cString: $0) } ?? "unknown libvirt error")
    }

    func open(_ uri: String) throws(Failure) -> Connection {
        guard let connection = openReadOnly(uri) else { throw failure() }
        return connection
    }

    func close(_ connection: Connection) { _ = closeConnection(connection) }

    func alive(_ connection: Connection) -> Bool { isAlive(connection) == 1 }

    /// One domain's statistics as libvirt names them (`vcpu.0.exits.sum`), numbers only: the
    /// names' bytes one after another (`fieldEnds[i]` where the i-th ends), no String each
    /// (a big host's domains have hundreds each, the same every call).
    struct DomainStats: Sendable {
        var name: String
        var id: Int
        var fieldBytes: [UInt8] = []
        var fieldEnds: [Int32] = []
        var values: [UInt64] = []

        mutating func append<Bytes: Collection<UInt8>>(_ field: Bytes, _ value: UInt64) {
            fieldBytes.append(contentsOf: field)
            fieldEnds.append(Int32(fieldBytes.count))
            values.append(value)
        }

        /// Room for `count` values, their names about as long as KVM's (`vcpu.7.halt_wakeup.sum`).
        mutating func reserve(_ count: Int) {
            fieldBytes.reserveCapacity(count * 24)
            fieldEnds.reserveCapacity(count)
            values.reserveCapacity(count)
        }

        /// The i-th value's field name.
        func field(_ index: Int) -> String {
            let start = index == 0 ? 0 : Int(fieldEnds[index - 1])
            return String(decoding: fieldBytes[start..<Int(fieldEnds[index])], as: UTF8.self)
        }
    }

    /// The VM and vCPU statistics of every running domain, in one call.
    func allDomainStats(_ connection: Connection) throws(Failure) -> [DomainStats] {
        var records: UnsafeMutablePointer<UnsafeMutableRawPointer?>?
        let count = getAllDomainStats(connection, Self.statsGroups, &records, Self.statsFlags)
        guard count >= 0 else { throw failure() }
        defer { if records != nil { recordListFree(records) } }
        guard let records else { return [] }
        var domains: [DomainStats] = []
        var parameters = 0
        defer { HeapMemory.keepFreed(upTo: parameters * Self.freedPerParameter) }
        for index in 0..<Int(count) {
            // virDomainStatsRecord: { virDomainPtr dom; virTypedParameterPtr params; int nparams; }
            guard let record = records[index] else { continue }
            let domain = OpaquePointer(record.load(as: UnsafeMutableRawPointer?.self))
            let params = record.load(fromByteOffset: MemoryLayout<UnsafeRawPointer>.stride,
                                     as: UnsafeMutableRawPointer?.self)
            let paramCount = Int(record.load(fromByteOffset: 2 * MemoryLayout<UnsafeRawPointer>.stride, as: Int32.self))
            var stats = DomainStats(name: domainName(domain).map { String(cString: $0) } ?? "", id: Int(domainID(domain)))
            if let params {
                parameters += max(paramCount, 0)
                stats.reserve(max(paramCount, 0))
                for i in 0..<max(paramCount, 0) {
                    let param = params + i * Self.typedParameterSize
                    if let value = Self.number(param) { stats.append(Self.fieldName(param), value) }
                }
            }
            domains.append(stats)
        }
        return domains
    }

    /// What libvirt's client library allocates and frees per value of an answer: its typed
    /// parameter (96 bytes), the name decoded on the way, its part of the message. An answer
    /// of 20,000 values (50 domains × 8 vCPUs) stops being given back to the system and
    /// faulted in again at 2 MiB kept; three times the parameters' size leaves room.
    private static let freedPerParameter = 3 * typedParameterSize

    /// virTypedParameter: `char field[80]; int type; union { ... } value;` (96 bytes).
    private static let fieldLength = 80
    private static let typedParameterSize = 96
    private static let valueOffset = 88

    private static func fieldName(_ param: UnsafeMutableRawPointer) -> UnsafeRawBufferPointer {
        let end = memchr(param, 0, fieldLength).map { UnsafeRawPointer($0) - UnsafeRawPointer(param) } ?? fieldLength
        return UnsafeRawBufferPointer(start: param, count: end)
    }

    /// The value when it is an integer or a boolean (1/0); nil for negatives, doubles and
    /// strings, which KVM's statistics never are.
    private static func number(_ param: UnsafeMutableRawPointer) -> UInt64? {
        let value = param + valueOffset
        switch param.load(fromByteOffset: fieldLength, as: Int32.self) {
        case 1: // VIR_TYPED_PARAM_INT
            let number = value.load(as: Int32.self)
            return number < 0 ? nil : UInt64(number)
        case 2: return UInt64(value.load(as: UInt32.self)) // UINT
        case 3: // LLONG
            let number = value.load(as: Int64.self)
            return number < 0 ? nil : UInt64(number)
        case 4: return value.load(as: UInt64.self) // ULLONG
        case 6: return value.load(as: Int8.self) != 0 ? 1 : 0 // BOOLEAN (a char)
        default: return nil
        }
    }
}
