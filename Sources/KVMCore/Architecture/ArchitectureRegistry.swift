/// The architectures kvmstat knows, looked up by the names users type and by `uname -m`.
/// The executable fills it in one place; libraries never name an architecture module.
public struct ArchitectureRegistry: Sendable {
    public private(set) var families: [any ArchitectureFamily] = []

    public init(_ families: [any ArchitectureFamily] = []) {
        self.families = families
    }

    public mutating func register(_ family: any ArchitectureFamily) {
        families.append(family)
    }

    /// Every name `--arch` accepts, in registration order.
    public var names: [String] {
        families.flatMap { $0.architectures.map(\.name) }
    }

    public func architecture(named name: String) -> (any Architecture)? {
        for family in families {
            if let match = family.architectures.first(where: { $0.name == name }) { return match }
        }
        return nil
    }

    /// Whether `architecture` belongs to the family that claims `machine` (`uname -m`): its
    /// syscall and ioctl numbers are then the running kernel's.
    public func architecture(_ architecture: any Architecture, runsOn machine: String) -> Bool {
        families.contains { family in
            family.machinePrefixes.contains { machine.hasPrefix($0) }
                && family.architectures.contains { $0.name == architecture.name }
        }
    }

    /// Detects the running host's architecture, or explains why none applies.
    public func detect(on host: HostFacts) throws(ArchitectureError) -> Detection {
        for family in families
        where family.machinePrefixes.contains(where: { host.machine.hasPrefix($0) }) {
            return family.detect(on: host)
        }
        throw .unsupportedMachine(host.machine, known: names)
    }
}

public enum ArchitectureError: Error, Sendable, Equatable, CustomStringConvertible {
    case unsupportedMachine(String, known: [String])
    case unknownName(String, known: [String])

    public var description: String {
        switch self {
        case .unsupportedMachine(let machine, let known):
            return "unsupported machine '\(machine)' (uname -m); use --arch with one of: "
                + known.joined(separator: ", ")
        case .unknownName(let name, let known):
            return "unknown architecture '\(name)'; known: " + known.joined(separator: ", ")
        }
    }
}
