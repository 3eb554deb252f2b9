/// The parts of an internal event key: `kvm_exit(HLT) kvm_exit` is child `kvm_exit(HLT)` of
/// parent `kvm_exit`; `kvm_exit` is a parent; a by-guest key is a pid.
public struct FieldKey: Sendable, Equatable {
    /// What users see: `kvm_exit(HLT)`.
    public let name: String
    /// The parent event of a child, or nil.
    public let parent: String?

    public init(_ key: String) {
        if let space = key.firstIndex(of: " ") {
            name = String(key[..<space])
            parent = String(key[key.index(after: space)...])
        } else {
            name = key
            parent = nil
        }
    }

    public var isChild: Bool { parent != nil }
}
