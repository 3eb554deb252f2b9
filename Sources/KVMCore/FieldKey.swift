/// The parts of an internal event key: `kvm_exit(HLT)/kvm_exit` is child `kvm_exit(HLT)` of
/// parent `kvm_exit`; `kvm_exit` is a parent; a by-guest key is a pid. The separator is `/`,
/// the one character no debugfs or tracefs name can hold, so a field name with a space (or
/// any other character a crafted tree may use) is never mistaken for a child.
public struct FieldKey: Sendable, Equatable {
    public static let separator: Character = "/"

    /// What users see: `kvm_exit(HLT)`.
    public let name: String
    /// The parent event of a child, or nil.
    public let parent: String?

    public init(_ key: String) {
        if let split = key.firstIndex(of: Self.separator) {
            name = String(key[..<split])
            parent = String(key[key.index(after: split)...])
        } else {
            name = key
            parent = nil
        }
    }

    /// The key of `name`, a child of `parent` when there is one.
    public static func key(_ name: String, parent: String?) -> String {
        parent.map { name + String(separator) + $0 } ?? name
    }

    public var isChild: Bool { parent != nil }
}
