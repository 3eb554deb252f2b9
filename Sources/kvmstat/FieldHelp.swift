import KVMCore
import KVMSources

/// `-f help`: the events the chosen sources offer, one per line indented by two spaces, child
/// events folded into their parent (as upstream prints them).
enum FieldHelp {
    static func run(sourceNames: [String], configuration: SourceConfiguration) -> Never {
        var names = Set<String>()
        // A filter that wants nothing: the sources list their fields without opening any.
        var configuration = configuration
        configuration.fieldFilter = try? FieldFilter("(?!)")
        for name in sourceNames {
            guard let entry = Builtins.sources.entry(named: name) else { continue }
            do {
                let source = try entry.make(configuration)
                for field in source.availableFields() {
                    names.insert(String(field.prefix { $0 != "(" }))
                }
                source.close()
            } catch {
                Console.fail(error.description)
            }
        }
        Console.out("  " + names.sorted().joined(separator: "\n  ") + "\n")
        Console.leave(0)
    }
}
