/// Each guest's value of every wanted event (`Sample.guestValues`), as a table: a column per
/// event (its key without the guest), a row per guest.
///
/// Why a table and not `[EventID: UInt64]`: a big host's sample has hundreds of thousands of
/// these values (500 guests × 8 vCPUs: 185,000) but a few hundred distinct events. As a
/// dictionary each value cost a key of a hundred bytes and its hash slot, 31 MB a sample, and
/// the endpoint holds two samples while it makes the next; here a key is kept once per column
/// and a value is 8 bytes in its guest's row. Formats walk it row by row, a column's work
/// (its series' shape) done once, not once per guest.
public struct GuestValues: Sendable {
    /// The events, by column: keys without a guest.
    public private(set) var columns: [EventID] = []
    private var columnOf: [EventID: Int] = [:]
    /// The guests, by row (nil: values a source gave without a guest).
    public private(set) var guests: [Int?] = []
    private var rowOf: [Int?: Int] = [:]
    /// By row: each column's value (0 where it has none) and which columns have one, a bit each.
    private var cells: [[UInt64]] = []
    private var present: [[UInt64]] = []
    /// How many values the table holds.
    public private(set) var count = 0

    public init() {}

    public var isEmpty: Bool { count == 0 }

    /// The column of `key` (its guest left out), added when new.
    public mutating func column(_ key: EventID) -> Int {
        let key = key.guest == nil ? key : key.of(guest: nil)
        if let known = columnOf[key] { return known }
        columnOf[key] = columns.count
        columns.append(key)
        return columns.count - 1
    }

    /// The row of `guest`, added when new.
    public mutating func row(_ guest: Int?) -> Int {
        if let known = rowOf[guest] { return known }
        rowOf[guest] = guests.count
        guests.append(guest)
        cells.append([])
        present.append([])
        return guests.count - 1
    }

    /// The column of `key` (its guest left out), if it has one.
    public func columnIndex(of key: EventID) -> Int? { columnOf[key.guest == nil ? key : key.of(guest: nil)] }

    /// The row of `guest`, if it has one.
    public func rowIndex(of guest: Int?) -> Int? { rowOf[guest] }

    /// The value in `row` and `column`, nil where there is none.
    public func value(row: Int, column: Int) -> UInt64? {
        guard column < cells[row].count, present[row][column >> 6] & (1 << UInt64(column & 63)) != 0 else { return nil }
        return cells[row][column]
    }

    /// Sets (or with nil removes) the value in `row` and `column`.
    public mutating func set(_ value: UInt64?, row: Int, column: Int) {
        precondition(column < columns.count, "a column the table has not made")
        let word = column >> 6, bit = UInt64(1) << UInt64(column & 63)
        if column >= cells[row].count {
            guard value != nil else { return }
            // A row is made as wide as the table at once (rows after the first have every
            // column theirs: one allocation of the size needed, not ten grown by doubling).
            if cells[row].capacity <= column {
                cells[row].reserveCapacity(Swift.max(columns.count, cells[row].capacity * 2))
            }
            cells[row].append(contentsOf: repeatElement(0, count: column + 1 - cells[row].count))
            if word >= present[row].count {
                present[row].append(contentsOf: repeatElement(0, count: word + 1 - present[row].count))
            }
        }
        let had = present[row][word] & bit != 0
        if let value {
            cells[row][column] = value
            if !had {
                present[row][word] |= bit
                count += 1
            }
        } else if had {
            cells[row][column] = 0
            present[row][word] &= ~bit
            count -= 1
        }
    }

    /// Adds `amount` to the value in `row` and `column` (0 where there is none), wrapping as
    /// counters do.
    public mutating func add(_ amount: UInt64, row: Int, column: Int) {
        set((value(row: row, column: column) ?? 0) &+ amount, row: row, column: column)
    }

    /// Calls `body` with each column that has a value in `row` and the value, in column order.
    public func forEach(inRow row: Int, _ body: (_ column: Int, _ value: UInt64) throws -> Void) rethrows {
        let values = cells[row], bits = present[row]
        for (word, set) in bits.enumerated() where set != 0 {
            var rest = set
            while rest != 0 {
                let column = word << 6 | rest.trailingZeroBitCount
                rest &= rest - 1
                try body(column, values[column])
            }
        }
    }

    /// The value of `key` (whose guest names the row), nil where there is none.
    public subscript(key: EventID) -> UInt64? {
        get {
            let column = key.guest == nil ? key : key.of(guest: nil)
            guard let row = rowOf[key.guest], let column = columnOf[column] else { return nil }
            return value(row: row, column: column)
        }
        set {
            if newValue == nil && (rowOf[key.guest] == nil || columnOf[key.of(guest: nil)] == nil) { return }
            set(newValue, row: row(key.guest), column: column(key))
        }
    }

    public subscript(key: EventID, default value: UInt64) -> UInt64 {
        get { self[key] ?? value }
        set { self[key] = newValue }
    }

    /// Every value's key, guest included.
    public var keys: [EventID] { map(\.key) }

    /// Takes `other`'s values (replacing any of the same key), its columns' keys given
    /// `source` (`Stats` qualifies each source's keys so).
    public mutating func merge(_ other: GuestValues, from source: String) {
        if isEmpty {
            // The other's rows as they are, its columns' keys qualified: no value copied
            // (a big host's are hundreds of thousands), unless two keys became one.
            let qualified = other.columns.map { $0.source == source ? $0 : $0.from(source) }
            let numbered = Dictionary(qualified.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
            if numbered.count == qualified.count {
                self = other
                columns = qualified
                columnOf = numbered
                return
            }
        }
        let mine = other.columns.map { column($0.source == source ? $0 : $0.from(source)) }
        for (theirs, guest) in other.guests.enumerated() {
            let row = row(guest)
            other.forEach(inRow: theirs) { column, value in set(value, row: row, column: mine[column]) }
        }
    }
}

extension GuestValues: Sequence {
    /// Each value with its key (guest included), row by row in column order.
    public struct Iterator: IteratorProtocol {
        private let table: GuestValues
        private var row = 0
        private var pending: [(column: Int, value: UInt64)] = []

        init(_ table: GuestValues) { self.table = table }

        public mutating func next() -> (key: EventID, value: UInt64)? {
            while pending.isEmpty {
                guard row < table.guests.count else { return nil }
                var values: [(column: Int, value: UInt64)] = []
                table.forEach(inRow: row) { values.append(($0, $1)) }
                pending = values.reversed()
                row += 1
            }
            let (column, value) = pending.removeLast()
            return (table.columns[column].of(guest: table.guests[row - 1]), value)
        }
    }

    public func makeIterator() -> Iterator { Iterator(self) }

    public var underestimatedCount: Int { count }
}

extension GuestValues: ExpressibleByDictionaryLiteral {
    public init(dictionaryLiteral elements: (EventID, UInt64)...) {
        self.init()
        for (key, value) in elements { self[key] = value }
    }
}

extension GuestValues: Equatable {
    /// The same values under the same keys, however the columns and rows are laid out.
    public static func == (lhs: GuestValues, rhs: GuestValues) -> Bool {
        lhs.count == rhs.count && lhs.allSatisfy { rhs[$0.key] == $0.value }
    }
}
