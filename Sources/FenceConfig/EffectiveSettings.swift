/// The settings the daemons will run with, written back in the file's own syntax with every
/// default spelled out, so an operator sees what an omitted key means before starting anything.
public enum EffectiveSettings {
    /// One tree for whatever the file configures: fence-routerd's settings, fence-hostd's, or both
    /// (one file may serve both on a host). `hostname` fills the default host and router ids.
    public static func document(router: RouterConfiguration?, host: HostAgentConfiguration?, file: String, hostname: String) -> ConfigDocument {
        var items: [ConfigNode] = []
        if let router {
            items.append(.block("fence_virtd", daemonItems(router.daemon)))
            let listeners = router.multicastListeners.map { ConfigNode.block("multicast", multicastItems($0)) }
                + router.tcpListeners.map { ConfigNode.block("tcp", tcpItems($0)) }
            if !listeners.isEmpty { items.append(.block("listeners", listeners)) }
        } else if let host {
            items.append(.block("fence_virtd", [.assignment("debug", String(host.debugLevel))]))
        }
        var backends: [ConfigNode] = []
        let bus = router?.bus ?? host?.bus
        if let bus {
            var amqp = busItems(bus)
            if let host { amqp += agentItems(host.agent, hostname: hostname) }
            if let router, router.daemon.backend == .amqp { amqp += routerItems(router.routing, hostname: hostname) }
            backends.append(.block("amqp", amqp))
        }
        let libvirt = host?.libvirt ?? (router?.daemon.backend == .libvirt ? router?.libvirt : nil)
        if let libvirt {
            backends.append(.block("libvirt", libvirt.uris.enumerated().map { index, uri in .assignment(index == 0 ? "uri" : "uri\(index)", uri) }))
        }
        if !backends.isEmpty { items.append(.block("backends", backends)) }
        if let metrics = router?.metrics ?? host?.metrics {
            var endpoints: [ConfigNode] = []
            if router != nil { endpoints.append(.assignment("router", metrics.router.map(\.description) ?? "none")) }
            if host != nil { endpoints.append(.assignment("agent", metrics.agent.map(\.description) ?? "none")) }
            items.append(.block("metrics", endpoints))
        }
        if let groups = router?.groups, !groups.isEmpty {
            items.append(.block("groups", groups.map { group in
                .block("group", (group.name.map { [ConfigNode.assignment("name", $0)] } ?? [])
                    + group.members.map { .assignment("uuid", $0) } + group.sources.map { .assignment("ip", $0) })
            }))
        }
        return ConfigDocument(file: file, items: items)
    }

    private static func daemonItems(_ daemon: DaemonSettings) -> [ConfigNode] {
        [
            .assignment("listener", daemon.listeners.map(\.rawValue).joined(separator: ",")),
            .assignment("backend", daemon.backend.rawValue),
            .assignment("debug", String(daemon.debugLevel)),
            .assignment("foreground", flag(daemon.foreground)),
            .assignment("wait_for_init", flag(daemon.waitForBackend)),
            .assignment("request_timeout", seconds(daemon.requestTimeout)),
            .assignment("duplicate_window", seconds(daemon.duplicateWindow)),
            .assignment("state_directory", daemon.stateDirectory),
            .assignment("replay_memory", seconds(daemon.replayMemory)),
        ]
    }

    private static func securityItems(_ security: ListenerSecurity) -> [ConfigNode] {
        [
            .assignment("key_file", security.keyFile),
            .assignment("hash", security.minimumHash.description),
            .assignment("auth", security.auth.description),
        ]
    }

    private static func multicastItems(_ listener: MulticastListenerSettings) -> [ConfigNode] {
        securityItems(listener.security) + [
            .assignment("family", listener.family == .ipv4 ? "ipv4" : "ipv6"),
            .assignment("address", listener.group.description),
            .assignment("port", String(listener.port)),
        ] + optional("interface", listener.interface)
    }

    private static func tcpItems(_ listener: TCPListenerSettings) -> [ConfigNode] {
        securityItems(listener.security) + [
            .assignment("family", listener.address.family == .ipv4 ? "ipv4" : "ipv6"),
            .assignment("address", listener.address.description),
            .assignment("port", String(listener.port)),
        ]
    }

    private static func busItems(_ bus: BusSettings) -> [ConfigNode] {
        bus.urls.enumerated().map { index, url in .assignment(index == 0 ? "url" : "url\(index)", url) } + optional("user", bus.user) + optional("password_file", bus.passwordFile) + [
            .assignment("sasl_mechanism", bus.saslMechanism.rawValue),
        ] + optional("tls_ca_file", bus.tlsCAFile) + optional("tls_cert_file", bus.tlsCertificateFile)
            + optional("tls_key_file", bus.tlsKeyFile) + [
                .assignment("address_profile", bus.addressProfile.rawValue),
                .assignment("allow_insecure_plain", flag(bus.allowInsecurePlain)),
                .assignment("bus_key_file", bus.busKeyFile),
                .assignment("clock_tolerance", seconds(bus.clockTolerance)),
                .assignment("max_message_size", String(bus.maximumMessageSize)),
                .assignment("identity_key_file", bus.identityKeyFile),
                .assignment("trust_directory", bus.trustDirectory),
            ]
    }

    private static func agentItems(_ agent: HostAgentSettings, hostname: String) -> [ConfigNode] {
        [
            .assignment("host_id", agent.hostID ?? hostname),
            .assignment("snapshot_interval", seconds(agent.snapshotInterval)),
            .assignment("heartbeat_interval", seconds(agent.heartbeatInterval)),
        ]
    }

    private static func routerItems(_ routing: RouterBusSettings, hostname: String) -> [ConfigNode] {
        [.assignment("router_id", routing.routerID ?? "router-\(hostname)")]
            + optional("expected_hosts", routing.expectedHosts.isEmpty ? nil : routing.expectedHosts.joined(separator: ", ")) + [
                .assignment("host_freshness", seconds(routing.freshness)),
                .assignment("warm_up", seconds(routing.warmUp)),
            ]
    }

    private static func optional(_ name: String, _ value: String?) -> [ConfigNode] {
        value.map { [.assignment(name, $0)] } ?? []
    }

    private static func flag(_ value: Bool) -> String { value ? "1" : "0" }

    private static func seconds(_ duration: Duration) -> String { String(duration.components.seconds) }
}

extension ConfigNode {
    /// A new assignment, not from any file (line 0).
    public static func assignment(_ name: String, _ value: String) -> ConfigNode {
        ConfigNode(name: name, value: value, line: 0, children: nil)
    }

    /// A new block, not from any file (line 0).
    public static func block(_ name: String, _ children: [ConfigNode]) -> ConfigNode {
        ConfigNode(name: name, value: nil, line: 0, children: children)
    }
}
