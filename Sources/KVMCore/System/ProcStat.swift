/// A process's or thread's `/proc/.../stat` line, by field number as proc(5) numbers them
/// (1 pid, 2 comm, 3 state, ...). The name in parentheses is anyone's to choose, spaces and
/// parentheses included: fields are counted after its last `)`, never by splitting the line.
public struct ProcStat: Sendable {
    /// Fields 3 on.
    private let fields: [Substring]

    /// The stat of `path` (`/proc/PID/stat`, `/proc/PID/task/TID/stat`); nil when it has gone.
    public init?(path: String) {
        guard let text = try? FileSystem.readText(path) else { return nil }
        self.init(text: text)
    }

    public init?(text: String) {
        guard let close = text.lastIndex(of: ")") else { return nil }
        fields = text[text.index(after: close)...].split(separator: " ")
    }

    /// Field `number` as a number (0 when absent or not a number).
    public subscript(number: Int) -> UInt64 {
        let index = number - 3
        return index >= 0 && index < fields.count ? UInt64(fields[index]) ?? 0 : 0
    }

    /// The state letter (field 3): `R`, `S`, `Z`...
    public var state: Character? { fields.first?.first }
}
