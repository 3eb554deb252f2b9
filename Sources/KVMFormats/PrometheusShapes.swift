import KVMCore
import Synchronization

/// A key as its shape (a key but its guest, of the host's series or a guest's): hashed and
/// compared without its guest. Every guest has the same few shapes of key.
struct ShapeKey: Hashable, Sendable {
    let key: EventID
    let perGuest: Bool

    func hash(into hasher: inout Hasher) { hasher.combine(key.shapeCode) }

    static func == (lhs: ShapeKey, rhs: ShapeKey) -> Bool {
        lhs.perGuest == rhs.perGuest && lhs.key.sameShape(as: rhs.key)
    }
}

/// An exposition's shapes and families as it numbered them, with what they were made from
/// (the sample's descriptions, and the names two sources report): the next exposition made
/// from the same starts from it, and writes only the keys new to it (a host's keys are the same
/// sample after sample). Families of keys an exposition does not have are not written.
struct ShapeTable: Sendable {
    let descriptions: [String: [String: MetricFamily]]
    let ambiguous: Set<String>
    var shapeNumbers: [ShapeKey: Int32] = [:]
    /// The shape first seen of each shape hash (whether a guest's: the hash's sign); a key of
    /// another shape with the same hash is looked up in `shapeNumbers`.
    var shapeByCode: [Int: Int32] = [:]
    var shapes: [PrometheusWriter.Shape] = []
    /// A key of each shape (for ordering).
    var shapeKeys: [EventID] = []
    var shapeBytes: [UInt8] = []
    var vcpuFamilies: [FamilyKey: Int32] = [:]
    var families: [String: PrometheusWriter.Family] = [:]
    /// The families' names in order, and the shapes' places (`PrometheusWriter.places()`),
    /// as last worked out.
    var familyOrder: [String] = []
    var places: [Int32] = []

    init(families: [String: [String: MetricFamily]], ambiguous: Set<String>) {
        descriptions = families
        self.ambiguous = ambiguous
    }
}

/// What one format's last exposition numbered (`ShapeTable`), for the next: a host's keys are
/// the same sample after sample, and working a shape out (its family's name, help and labels)
/// costs microseconds, hundreds of times an exposition. The table is taken again only while
/// what it was made from is the same: the sample's descriptions (`Sample.families`) and the
/// names two sources report. Bounded: a table past `limit` shapes (sources that make ever new
/// keys) is not kept.
final class ShapeMemory: Sendable {
    static let limit = 65_536
    private let last = Mutex<ShapeTable?>(nil)

    init() {}

    /// How many shapes the kept table has.
    var count: Int { last.withLock { $0?.shapes.count ?? 0 } }

    /// The last exposition's table, when `sample`'s descriptions are the ones it was made from.
    func table(for sample: Sample) -> ShapeTable? {
        last.withLock { table in
            guard let table, table.ambiguous == sample.ambiguousNames, table.descriptions == sample.families else {
                return nil
            }
            return table
        }
    }

    /// Keeps an exposition's table for the next (not one past `limit` shapes: a table that big
    /// is made again each time rather than kept).
    func keep(_ table: ShapeTable) {
        last.withLock { $0 = table.shapes.count <= Self.limit ? table : nil }
    }
}
