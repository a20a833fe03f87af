/// The `groups` static map: which requesters may act on which domains.
///
/// With no group at all everything is allowed, as in the reference. Sources and members compare
/// case-insensitively; a member may be a domain's name or its UUID.
public struct AccessPolicy: Sendable {
    public struct Group: Sendable {
        let sources: Set<String>
        let members: Set<String>

        public init(sources: [String], members: [String]) {
            self.sources = Set(sources.map { $0.lowercased() })
            self.members = Set(members.map { $0.lowercased() })
        }
    }

    private let groups: [Group]

    public init(groups: [Group]) {
        self.groups = groups
    }

    public var isOpen: Bool { groups.isEmpty }

    /// May `source` act on the domain named `target` (as the request names it)?
    public func allows(source: String, target: String) -> Bool {
        guard !isOpen else { return true }
        return groups(of: source).contains { $0.members.contains(target.lowercased()) }
    }

    /// The part of a host list `source` may see: domains whose name or UUID is in one of its groups.
    public func visible(to source: String, _ domains: [DomainInfo]) -> [DomainInfo] {
        guard !isOpen else { return domains }
        let members = groups(of: source).reduce(into: Set<String>()) { $0.formUnion($1.members) }
        return domains.filter { members.contains($0.name.lowercased()) || members.contains($0.uuid) }
    }

    private func groups(of source: String) -> [Group] {
        groups.filter { $0.sources.contains(source.lowercased()) }
    }
}
