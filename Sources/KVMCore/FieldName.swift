/// Field names as sources report them. A child event (`EventID` with a parent) is shown as
/// `child`, e.g. `kvm_exit(HLT)`.
public enum FieldName {
    /// `kvm_exit` for `kvm_exit(HLT)`; nil when `field` has no `(`.
    public static func tracepointParent(of field: String) -> String? {
        guard let open = field.firstIndex(of: "(") else { return nil }
        return String(field[..<open])
    }
}
