import BusClient
import FenceBus
import FenceCore
import JSONValue
import Routing

struct InventoryCommand: Subcommand {
    static let listenOption = Usage.Option.value("listen", "seconds", "How long to listen, in seconds (at least one snapshot interval).", default: "6")

    static let usage = Usage(
        path: ["inventory"],
        abstract: "Show every domain on every host, as the routers see it.",
        discussion: "Listens to the hosts' inventory on the bus for a snapshot interval, then prints each domain with its UUID, state and host, and each host with its liveness. Run it on a router's machine: the hosts seal their inventory for each router, so it reads with that router's identity key (router_id, identity_key_file).",
        options: [.configFile, .json, listenOption]
    )

    let configFile: String
    let json: Bool
    let listen: Int

    init(_ line: ParsedCommandLine) throws(UsageError) {
        configFile = line.value(defaulted: .configFile)
        json = line.flag(.json)
        listen = try line.integer(defaulted: Self.listenOption)
    }

    func run() async throws -> ExitStatus {
        let listen = self.listen
        let inventory = try await BusSession.with(configFile, signer: BusSession.router(configFile)) { endpoint in
            let stream = try await endpoint.subscribe(endpoint.addresses.inventory, deadline: .now + .seconds(10))
            let limit = ContinuousClock.now + .seconds(listen)
            return try await withThrowingTaskGroup(of: Inventory.self) { group in
                group.addTask {
                    var inventory = Inventory()
                    for await (envelope, _) in stream { inventory.apply(envelope.message, sentAt: envelope.sentAt, receivedAt: WallClock.now(), now: .now) }
                    return inventory
                }
                try await Task.sleep(until: limit)
                group.cancelAll()
                return try await group.next() ?? Inventory()
            }
        }
        print(json ? Self.json(inventory) : Self.table(inventory), terminator: "")
        return .success
    }

    static func rows(_ inventory: Inventory) -> [(domain: DomainInfo, host: String)] {
        inventory.hosts.values.flatMap { host in host.domains.values.map { ($0, host.id) } }
            .sorted { ($0.domain.name, $0.host) < ($1.domain.name, $1.host) }
    }

    static func liveness(_ host: HostView, _ inventory: Inventory) -> String {
        switch host.liveness(now: .now, freshness: inventory.freshness) {
        case .live: "live"
        case .stale(let reason): "stale (\(reason))"
        case .confirmedDown: "confirmed down"
        }
    }

    static func table(_ inventory: Inventory) -> String {
        var lines = [["DOMAIN", "UUID", "STATE", "HOST"]]
        lines += rows(inventory).map { [$0.domain.name, $0.domain.uuid, "\($0.domain.state)", $0.host] }
        var hosts = [["HOST", "LIVENESS", "DOMAINS"]]
        hosts += inventory.hosts.values.sorted { $0.id < $1.id }.map { [$0.id, liveness($0, inventory), String($0.domains.count)] }
        return format(lines) + "\n" + format(hosts)
    }

    static func format(_ rows: [[String]]) -> String {
        let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { index, cell in index == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[index] - cell.count) }
                .joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
    }

    static func json(_ inventory: Inventory) -> String {
        let domains = rows(inventory).map { row in
            JSON.object([("name", .string(row.domain.name)), ("uuid", .string(row.domain.uuid)), ("state", .string("\(row.domain.state)")),
                         ("persistent", row.domain.persistent.map(JSON.bool) ?? .null), ("host", .string(row.host))])
        }
        let hosts = inventory.hosts.values.sorted { $0.id < $1.id }.map { host in
            JSON.object([("host", .string(host.id)), ("liveness", .string(liveness(host, inventory))), ("domains", .integer(host.domains.count))])
        }
        return String(decoding: JSON.object([("domains", .array(domains)), ("hosts", .array(hosts))]).encoded(), as: UTF8.self) + "\n"
    }
}
