import KVMCore

/// The guests' series of an exposition, written family by family when it is finished, straight
/// from the sample's table (`GuestValues`), not first as lines: a family's series must be
/// together, but each guest has series in most families, so lines written guest by guest are
/// all held until the last guest's (13.5 MB at 500 guests × 8 vCPUs, most of the exposition).
/// Family by family, only one family's lines are held at a time, and they are handed on (to
/// the endpoint's gzip) as they are made.
///
/// The order is the one guest by guest gives: within a family, guests by pid (values given
/// without a guest first), each guest's series in its keys' order (their shapes' places).
struct GuestSeries {
    let values: GuestValues
    /// Rows in the order written.
    let rows: [Int]
    /// Each column's shape.
    let shapes: [Int32]
    /// By family number: its columns, in their shapes' places.
    let columnsOfFamily: [[Int]]
    /// By row: its guest's labels (`{guest="…",pid="…"`); nil for values without a guest.
    let labels: [[UInt8]?]
    /// By row: the vCPU families the guest has vCPU series of (their vCPUs' series stand for
    /// the statistic's own: it is left out).
    let vcpuFamilies: [Set<Int32>]

    /// Flushed to the sink when a family's lines reach this (a family of a big host is
    /// megabytes).
    static let flushSize = 1 << 18

    /// Writes family `family`'s guest series into `out`, `first` writing the family's header
    /// before its first line, handing `out` to `sink` whenever it has grown to `flushSize`.
    func write(family: Int, shapes table: ShapeTable, into out: inout [UInt8], sink: (UnsafeRawBufferPointer) -> Void,
               first: (inout [UInt8]) -> Void) {
        guard family < columnsOfFamily.count, !columnsOfFamily[family].isEmpty else { return }
        let columns = columnsOfFamily[family]
        table.shapes.withUnsafeBufferPointer { shapeOf in
            table.shapeBytes.withUnsafeBufferPointer { bytes in
                for row in rows {
                    for column in columns {
                        guard let value = values.value(row: row, column: column) else { continue }
                        let shape = shapeOf[Int(shapes[column])]
                        if !shape.isVCPU && shape.vcpuFamily >= 0 && vcpuFamilies[row].contains(shape.vcpuFamily) { continue }
                        first(&out)
                        PrometheusWriter.appendLine(shape, bytes, guestLabels: labels[row], value: value, to: &out)
                    }
                    if out.count >= Self.flushSize {
                        out.withUnsafeBytes(sink)
                        out.removeAll(keepingCapacity: true)
                    }
                }
            }
        }
    }
}

extension PrometheusWriter {
    /// Takes the sample's guests' values, to be written at `finish`: their shapes and places
    /// worked out once a column (a few hundred), their labels once a guest.
    mutating func addGuests(_ values: GuestValues) {
        guard !values.isEmpty else { return }
        let shapes = values.columns.map { shape(of: $0, perGuest: true) }
        let place = places()
        var columnsOfFamily = [[Int]](repeating: [], count: lines.count)
        for column in values.columns.indices.sorted(by: { place[Int(shapes[$0])] < place[Int(shapes[$1])] }) {
            let family = table.shapes[Int(shapes[column])].family
            if family >= 0 { columnsOfFamily[Int(family)].append(column) }
        }
        let rows = values.guests.indices.sorted { a, b in
            let lhs = values.guests[a], rhs = values.guests[b]
            return (lhs ?? 0, lhs == nil ? 0 : 1) < (rhs ?? 0, rhs == nil ? 0 : 1)
        }
        var vcpuFamilies = [Set<Int32>](repeating: [], count: values.guests.count)
        for row in values.guests.indices {
            values.forEach(inRow: row) { column, _ in
                let shape = table.shapes[Int(shapes[column])]
                if shape.isVCPU && shape.vcpuFamily >= 0 { vcpuFamilies[row].insert(shape.vcpuFamily) }
            }
        }
        guests = GuestSeries(values: values, rows: rows, shapes: shapes, columnsOfFamily: columnsOfFamily,
                             labels: values.guests.map { $0.map(guestLabelBytes) }, vcpuFamilies: vcpuFamilies)
    }
}
