import KVMCore
import KVMSources

/// `-f help`: the events the chosen sources offer, one per line indented by two spaces, child
/// events folded into their parent (as upstream prints them).
enum FieldHelp {
    /// The fields come from the sources' descriptions: nothing is opened.
    static func run(sources: [SourceDescription], configuration: SourceConfiguration) throws(Failure) -> Ending {
        var names = Set<String>()
        for source in sources {
            for field in try Failure.fromSource({ () throws(SourceError) in try source.fields(configuration) }) {
                names.insert(String(field.prefix { $0 != "(" }))
            }
        }
        try Console.out("  " + names.sorted().joined(separator: "\n  ") + "\n")
        return .success
    }
}
