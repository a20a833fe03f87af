import Foundation
import Testing
import TestSupport
import FenceConfig
import FenceWire

@Suite("fence_virt.conf")
struct ConfigurationTests {
    func load(_ name: String) throws -> (text: String, document: ConfigDocument) {
        let text = try String(contentsOf: Fixtures.url("fence_virt.conf/\(name)"), encoding: .utf8)
        return (text, try ConfigDocument(parsing: text, file: name))
    }

    @Test("Debian's shipped file: libvirt backend, multicast with interface and key_file")
    func debianShipped() throws {
        let configuration = try RouterConfiguration(document: load("debian-shipped.conf").document)
        #expect(configuration.daemon.listeners == [.multicast])
        #expect(configuration.daemon.backend == .libvirt)
        #expect(configuration.libvirt.uris == ["qemu:///system"])
        let multicast = try #require(configuration.multicastListeners.first)
        #expect(configuration.multicastListeners.count == 1)
        #expect(multicast.interface == "virbr0")
        #expect(multicast.interfaceLocation == SourceLocation(file: "debian-shipped.conf", line: 11, key: "listeners/multicast/interface"))
        #expect(multicast.security.keyFile == "/etc/fence_virt.key")
        #expect(multicast.security.minimumHash == .sha256)
        #expect(multicast.security.auth == .sha256)
        #expect(multicast.group.description == "225.0.0.12")
        #expect(multicast.port == 1229)
        #expect(configuration.tcpListeners.isEmpty)
        #expect(configuration.warnings.isEmpty)
        #expect(configuration.daemon.requestTimeout == .seconds(20))
        #expect(configuration.daemon.duplicateWindow == .seconds(2))
    }

    @Test("a file written by the real fence_virtd -c reads, and renders back byte for byte")
    func writtenByConfigurator() throws {
        let (text, document) = try load("written-by-fence_virtd-c.conf")
        let configuration = try RouterConfiguration(document: document)
        #expect(configuration.multicastListeners.first?.interface == "br0")
        #expect(configuration.multicastListeners.first?.security.keyFile == "/etc/cluster/fence_xvm.key")
        #expect(configuration.warnings.isEmpty)
        #expect(document.rendered() == text)
    }

    @Test("the man page example parses; its cpg backend is refused at its line")
    func manPageExample() throws {
        let (text, document) = try load("manpage-example.conf")
        #expect(throws: ConfigError(code: .invalidValue, file: "manpage-example.conf", line: 4, key: "fence_virtd/backend",
                                    message: "backend \"cpg\" is not supported (supported: libvirt, amqp)")) {
            try RouterConfiguration(document: document)
        }
        let libvirt = try ConfigDocument(parsing: text.replacingOccurrences(of: "\"cpg\"", with: "\"libvirt\""), file: "x")
        let groups = try RouterConfiguration(document: libvirt).groups
        #expect(groups == [AccessGroupSettings(
            name: "cluster1",
            sources: ["192.168.1.1", "192.168.1.2"],
            members: ["44179d3f-6c63-474f-a212-20c8b4b25b16", "1ce02c4b-dfa1-42cb-b5b1-f0b1091ece60", "node1", "node2"]
        )])
    }

    static let minimal = """
        fence_virtd {
        \tlistener = "multicast";
        \tbackend = "libvirt";
        }
        backends { libvirt { uri = "test:///default"; } }

        """

    struct Broken: Sendable, CustomTestStringConvertible {
        let name: String
        let text: String
        let code: ConfigError.Code
        let line: Int
        let key: String
        var testDescription: String { name }
    }

    static let broken: [Broken] = [
        Broken(name: "empty file", text: "  # nothing\n", code: .syntax, line: 0, key: ""),
        Broken(name: "empty value", text: "a {\n b = \"\";\n}\n", code: .syntax, line: 2, key: ""),
        Broken(name: "unquoted value", text: "a {\n b = 1;\n}\n", code: .syntax, line: 2, key: "a/b"),
        Broken(name: "missing semicolon", text: "a {\n b = \"1\"\n}\n", code: .syntax, line: 3, key: "a/b"),
        Broken(name: "semicolon after brace", text: "a {\n b = \"1\";\n};\n", code: .syntax, line: 3, key: "a"),
        Broken(name: "unclosed block", text: "a {\n b {\n c = \"1\";\n}\n", code: .syntax, line: 1, key: "a"),
        Broken(name: "unterminated quote", text: "a {\n b = \"1;\n}\n", code: .syntax, line: 2, key: ""),
        Broken(name: "stray brace", text: "}\n", code: .syntax, line: 1, key: ""),
        Broken(name: "no fence_virtd block", text: "listeners { }\n", code: .missingKey, line: 0, key: "fence_virtd"),
        Broken(name: "no listener", text: "fence_virtd {\n backend = \"libvirt\";\n}\n", code: .missingKey, line: 1, key: "fence_virtd/listener"),
        Broken(name: "unsupported listener", text: minimal.replacingOccurrences(of: "\"multicast\"", with: "\"serial\""), code: .invalidValue, line: 2, key: "fence_virtd/listener"),
        Broken(name: "no libvirt block", text: "fence_virtd {\n listener = \"multicast\";\n backend = \"libvirt\";\n}\n", code: .missingKey, line: 0, key: "backends/libvirt"),
        Broken(name: "libvirt without uri", text: minimal.replacingOccurrences(of: "uri = \"test:///default\";", with: ""), code: .missingKey, line: 5, key: "backends/libvirt/uri"),
        Broken(name: "port out of range", text: minimal + "listeners {\n multicast {\n  port = \"70000\";\n }\n}\n", code: .invalidValue, line: 8, key: "listeners/multicast/port"),
        Broken(name: "port not a number", text: minimal + "listeners {\n multicast {\n\n  port = \"12x\";\n }\n}\n", code: .invalidValue, line: 9, key: "listeners/multicast/port"),
        Broken(name: "unknown hash", text: minimal + "listeners {\n multicast {\n  hash = \"md5\";\n }\n}\n", code: .invalidValue, line: 8, key: "listeners/multicast/hash"),
        Broken(name: "unknown family", text: minimal + "listeners {\n multicast {\n  family = \"ipx\";\n }\n}\n", code: .invalidValue, line: 8, key: "listeners/multicast/family"),
        Broken(name: "group is not multicast", text: minimal + "listeners {\n multicast {\n  address = \"10.0.0.1\";\n }\n}\n", code: .invalidValue, line: 8, key: "listeners/multicast/address"),
        Broken(name: "address of the other family", text: minimal + "listeners {\n multicast {\n  family = \"ipv4\";\n  address = \"ff05::3:1\";\n }\n}\n", code: .invalidValue, line: 9, key: "listeners/multicast/address"),
        Broken(name: "bad boolean", text: minimal.replacingOccurrences(of: "backend = \"libvirt\";", with: "backend = \"libvirt\"; foreground = \"maybe\";"), code: .invalidValue, line: 3, key: "fence_virtd/foreground"),
        Broken(name: "request timeout too long", text: minimal.replacingOccurrences(of: "backend = \"libvirt\";", with: "backend = \"libvirt\"; request_timeout = \"900\";"), code: .invalidValue, line: 3, key: "fence_virtd/request_timeout"),
        Broken(name: "relative state directory", text: minimal.replacingOccurrences(of: "backend = \"libvirt\";", with: "backend = \"libvirt\"; state_directory = \"state\";"), code: .invalidValue, line: 3, key: "fence_virtd/state_directory"),
        Broken(name: "replay memory shorter than an hour", text: minimal.replacingOccurrences(of: "backend = \"libvirt\";", with: "backend = \"libvirt\"; replay_memory = \"60\";"), code: .invalidValue, line: 3, key: "fence_virtd/replay_memory"),
        Broken(name: "a broker node after a gap", text: "fence_virtd {\n listener = \"multicast\";\n backend = \"amqp\";\n}\nbackends {\n amqp {\n  url = \"amqp://a\"; bus_key_file = \"/k\";\n  url2 = \"amqp://c\";\n }\n}\n", code: .invalidValue, line: 8, key: "backends/amqp/url2"),
        Broken(name: "one node of the broker without TLS", text: "fence_virtd {\n listener = \"multicast\";\n backend = \"amqp\";\n}\nbackends {\n amqp {\n  url = \"amqps://a\"; tls_ca_file = \"/ca\"; bus_key_file = \"/k\";\n  url1 = \"amqp://b\";\n }\n}\n", code: .invalidValue, line: 8, key: "backends/amqp/url1"),
        Broken(name: "a message size limit too small for a snapshot", text: "fence_virtd {\n listener = \"multicast\";\n backend = \"amqp\";\n}\nbackends {\n amqp {\n  url = \"amqp://127.0.0.1\"; bus_key_file = \"/k\";\n  max_message_size = \"1000\";\n }\n}\n", code: .invalidValue, line: 8, key: "backends/amqp/max_message_size"),
        Broken(name: "the removed plain-node address profile", text: "fence_virtd {\n listener = \"multicast\";\n backend = \"amqp\";\n}\nbackends {\n amqp {\n  url = \"amqp://127.0.0.1\"; bus_key_file = \"/k\";\n  address_profile = \"amqp\";\n }\n}\n", code: .invalidValue, line: 8, key: "backends/amqp/address_profile"),
        Broken(name: "state directory in its old place", text: "fence_virtd {\n listener = \"multicast\";\n backend = \"amqp\";\n}\nbackends {\n amqp {\n  url = \"amqp://127.0.0.1\"; bus_key_file = \"/k\";\n  state_directory = \"/var/lib/x\";\n }\n}\n", code: .invalidValue, line: 8, key: "backends/amqp/state_directory"),
    ]

    @Test("a broken file is refused with its file, line and key", arguments: broken)
    func brokenFiles(case broken: Broken) {
        do {
            let document = try ConfigDocument(parsing: broken.text, file: "/etc/broken.conf")
            _ = try RouterConfiguration(document: document)
            Issue.record("accepted")
        } catch {
            #expect(error.code == broken.code, "\(error)")
            #expect(error.file == "/etc/broken.conf")
            #expect(error.line == broken.line, "\(error)")
            #expect(error.key == broken.key, "\(error)")
            #expect(error.description.hasPrefix(broken.line > 0 ? "/etc/broken.conf:\(broken.line): " : "/etc/broken.conf: "))
        }
    }

    @Test("several listeners at once: IPv4 and IPv6 multicast blocks and tcp")
    func severalListeners() throws {
        let text = """
            fence_virtd { listener = "multicast,tcp"; backend = "libvirt"; }
            listeners {
                multicast { interface = "br0"; }
                multicast { family = "ipv6"; interface = "br0"; hash = "sha512"; }
                tcp { address = "198.51.100.1"; port = "1230"; auth = "sha1"; }
            }
            backends { libvirt { uri = "test:///a.xml"; uri1 = "test:///b.xml"; uri2 = "test:///c.xml"; uri4 = "test:///skipped.xml"; } }
            """
        let configuration = try RouterConfiguration(document: ConfigDocument(parsing: text, file: "f"))
        #expect(configuration.daemon.listeners == [.multicast, .tcp])
        #expect(configuration.multicastListeners.map(\.group.description) == ["225.0.0.12", "ff05::3:1"])
        #expect(configuration.multicastListeners.map(\.security.minimumHash) == [.sha256, .sha512])
        #expect(configuration.tcpListeners.map(\.address.description) == ["198.51.100.1"])
        #expect(configuration.tcpListeners.first?.port == 1230)
        #expect(configuration.tcpListeners.first?.security.auth == .sha1)
        #expect(configuration.libvirt.uris == ["test:///a.xml", "test:///b.xml", "test:///c.xml"])
    }

    @Test("a repeated key counts by its last occurrence; unknown keys are reported, not fatal")
    func repeatsAndUnknownKeys() throws {
        let text = Self.minimal + "listeners {\n multicast {\n  port = \"1\";\n  port = \"2\";\n  interfce = \"br0\";\n }\n}\n"
        let configuration = try RouterConfiguration(document: ConfigDocument(parsing: text, file: "f"))
        #expect(configuration.multicastListeners.first?.port == 2)
        #expect(configuration.multicastListeners.first?.interface == nil)
        #expect(configuration.warnings.map(\.description) == ["f:10: listeners/multicast/interfce: unknown key, ignored"])
    }

    @Test("keys and block names are case-insensitive; a block may carry a value")
    func caseAndValuedBlocks() throws {
        let text = """
            FENCE_VIRTD { Listener = "tcp"; BACKEND = "libvirt"; }
            backends { libvirt { URI = "test:///default"; } }
            groups { group = "g1" { ip = "10.0.0.1"; uuid = "vm1"; } }
            """
        let configuration = try RouterConfiguration(document: ConfigDocument(parsing: text, file: "f"))
        #expect(configuration.daemon.listeners == [.tcp])
        #expect(configuration.tcpListeners.count == 1)
        #expect(configuration.libvirt.uris == ["test:///default"])
        #expect(configuration.groups.first?.name == "g1")
    }

    @Test("the amqp backend: broker, bus and router settings; one file serves fence-hostd too")
    func amqpBackend() throws {
        let text = """
            fence_virtd { listener = "multicast"; backend = "amqp"; }
            backends {
                amqp {
                    url = "amqps://broker.example:5671"; url1 = "amqps://broker2.example"; url2 = "amqps://[fd00::3]:5671";
                    tls_ca_file = "/etc/ca.pem"; bus_key_file = "/etc/bus.key";
                    router_id = "r1"; expected_hosts = "hv1, hv2 hv3"; host_freshness = "4"; warm_up = "10";
                    host_id = "hv1"; snapshot_interval = "7"; max_message_size = "1048576";
                }
                libvirt { uri = "qemu:///system"; }
            }
            """
        let document = try ConfigDocument(parsing: text, file: "f")
        let router = try RouterConfiguration(document: document)
        #expect(router.daemon.backend == .amqp)
        #expect(router.bus?.maximumMessageSize == 1 << 20)
        // url, url1, url2, … up to the first missing number, as fence_virt.conf numbers libvirt URIs.
        #expect(router.bus?.urls == ["amqps://broker.example:5671", "amqps://broker2.example", "amqps://[fd00::3]:5671"])
        #expect(router.routing.routerID == "r1")
        #expect(router.routing.expectedHosts == ["hv1", "hv2", "hv3"])
        #expect(router.routing.freshness == .seconds(4))
        #expect(router.routing.warmUp == .seconds(10))
        // Unset, the warm-up outlasts a freshness window and the agents' 5 s to list a new router.
        let defaultWarmUp = try RouterConfiguration(document: ConfigDocument(parsing: text.replacingOccurrences(of: "warm_up = \"10\";", with: ""), file: "f"))
        #expect(defaultWarmUp.routing.warmUp == .seconds(9))
        #expect(router.daemon.stateDirectory == "/var/lib/fence-router")
        #expect(router.daemon.replayMemory == .seconds(86_400))
        #expect(router.warnings.isEmpty, "\(router.warnings)")
        let agent = try HostAgentConfiguration(document: document)
        #expect(agent.agent.hostID == "hv1")
        #expect(agent.agent.snapshotInterval == .seconds(7))
        #expect(agent.warnings.isEmpty)

        let noCA = text.replacingOccurrences(of: "tls_ca_file = \"/etc/ca.pem\";", with: "")
        #expect(throws: ConfigError.self) { try RouterConfiguration(document: ConfigDocument(parsing: noCA, file: "f")) }
        let noKey = text.replacingOccurrences(of: "bus_key_file = \"/etc/bus.key\";", with: "")
        #expect(throws: ConfigError.self) { try RouterConfiguration(document: ConfigDocument(parsing: noKey, file: "f")) }
    }

    @Test("metrics: loopback endpoints by default, each daemon its own; host:port, [v6]:port or none; a bad one at its line")
    func metrics() throws {
        let base = "fence_virtd { listener = \"multicast\"; backend = \"libvirt\"; }\nbackends { libvirt { uri = \"test:///default\"; } }\n"
        let defaults = try RouterConfiguration(document: ConfigDocument(parsing: base, file: "f")).metrics
        #expect(defaults.router == MetricsSettings.Endpoint(host: "127.0.0.1", port: 9231))
        #expect(defaults.agent == MetricsSettings.Endpoint(host: "127.0.0.1", port: 9232))

        let set = try RouterConfiguration(document: ConfigDocument(parsing: base + "metrics { router = \"[::1]:9300\"; agent = \"none\"; rooter = \"x\"; }\n", file: "f"))
        #expect(set.metrics.router == MetricsSettings.Endpoint(host: "::1", port: 9300))
        #expect(set.metrics.router?.description == "[::1]:9300")
        #expect(set.metrics.agent == nil)
        #expect(set.warnings.map(\.key) == ["metrics/rooter"])

        #expect(throws: ConfigError(code: .invalidValue, file: "f", line: 4, key: "metrics/router",
                                    message: "\"localhost\" is not host:port ([address]:port for IPv6) or none")) {
            try RouterConfiguration(document: ConfigDocument(parsing: base + "metrics {\n router = \"localhost\"; }\n", file: "f"))
        }
    }

    @Test("the example configurations in Deploy/examples parse without a warning")
    func examples() throws {
        let examples = Fixtures.repository.appendingPathComponent("Deploy/examples")
        func document(_ name: String) throws -> ConfigDocument {
            try ConfigDocument(parsing: String(contentsOf: examples.appendingPathComponent(name), encoding: .utf8), file: name)
        }
        let single = try RouterConfiguration(document: document("fence_virt.conf.single-host"))
        #expect(single.daemon.backend == .libvirt)
        #expect(single.warnings.isEmpty, "\(single.warnings)")
        let multi = try document("fence_virt.conf.multi-host")
        let router = try RouterConfiguration(document: multi)
        #expect(router.daemon.backend == .amqp)
        #expect(router.routing.expectedHosts == ["hv1", "hv2", "hv3"])
        #expect(router.warnings.isEmpty, "\(router.warnings)")
        #expect(try HostAgentConfiguration(document: multi).warnings.isEmpty)
    }

    @Test("values may span lines and hold any character but a quote")
    func multiLineValues() throws {
        let document = try ConfigDocument(parsing: "a {\n b = \"x # not a comment\ny{};=\";\n}\n# end", file: "f")
        #expect(document.block(["a"])?.assignment(named: "b")?.value == "x # not a comment\ny{};=")
    }
}
