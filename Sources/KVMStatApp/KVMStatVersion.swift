/// kvmstat's version, as the repository's VERSION file says (a test keeps them equal;
/// Scripts/package names the package after the file).
enum KVMStatVersion {
    static let version = "0.9.0"
}
