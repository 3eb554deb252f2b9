import KVMCore

/// A tracepoint's record layout as tracefs's `format` file gives it: each field's offset and
/// size in the record a BPF program's context points to. Read at run time, so programs fit
/// the running kernel without BTF or headers.
struct TracepointFormat: Sendable, Equatable {
    struct Field: Sendable, Equatable {
        let offset: Int
        let size: Int
    }

    let fields: [String: Field]

    /// Parses `field:TYPE NAME; offset:N; size:N; signed:N;` lines; other lines are skipped.
    init(parsing text: String) {
        var fields: [String: Field] = [:]
        for line in text.split(separator: "\n") {
            var declaration: Substring?
            var offset: Int?
            var size: Int?
            for part in line.split(separator: ";") {
                let trimmed = part.drop { $0 == " " || $0 == "\t" }
                if trimmed.hasPrefix("field:") {
                    declaration = trimmed.dropFirst("field:".count)
                } else if trimmed.hasPrefix("offset:") {
                    offset = Int(trimmed.dropFirst("offset:".count))
                } else if trimmed.hasPrefix("size:") {
                    size = Int(trimmed.dropFirst("size:".count))
                }
            }
            // The name is the declaration's last word, without an array's brackets.
            guard let declaration, let offset, let size, offset >= 0, size > 0,
                  let last = declaration.split(separator: " ").last
            else { continue }
            let name = last.prefix { $0 != "[" }
            if !name.isEmpty { fields[String(name)] = Field(offset: offset, size: size) }
        }
        self.fields = fields
    }

    /// The format of tracepoint directory `directory` (`…/events/kvm/kvm_exit`).
    static func read(_ directory: String) -> TracepointFormat? {
        guard let text = try? FileSystem.readText(directory + "/format") else { return nil }
        return TracepointFormat(parsing: text)
    }
}
