package omnistream.peer;

/**
 * One unit of keyed work, routed by {@link #key}: what omnistream calls a command to an entity.
 * A Flink POJO (public fields, no-arg constructor) so Flink serialises it with its own
 * PojoSerializer, not Kryo.
 */
public class Cmd {
    // kinds
    public static final int MEMBER_TOUCH = 1;   // an event that names a member
    public static final int MEMBER_POINTS = 2;  // points earned by a fulfilled order
    public static final int CODE_SCAN = 3;      // a scan of one item code
    public static final int ORDER = 4;          // an order status change (to the order stage)
    public static final int SKU_RESERVE = 5;    // an order line placed
    public static final int SKU_COMMIT = 6;     // an order line fulfilled
    public static final int SKU_RELEASE = 7;    // an order line cancelled
    public static final int STOCK = 8;          // a stock reference event (receive/adjust/set)

    /** Routing key: "m:" member, "c:" code, "o:" channel/order, "s:" SKU. */
    public String key;
    public int kind;
    /** Event time, epoch milliseconds. */
    public long ts;
    /** Event type (MEMBER_TOUCH), status (ORDER), op (STOCK), member key (CODE_SCAN). */
    public String a;
    /** Location (ORDER placed, SKU_*, STOCK), member key (ORDER), order id (SKU_*). */
    public String b;
    /** Member key (ORDER), channel. */
    public String c;
    /** Quantity (SKU_*, STOCK), points (MEMBER_POINTS), safety stock (STOCK). */
    public long n;
    public long n2;
    /** Order lines, as placed: parallel arrays (arrays keep the type a POJO). */
    public String[] skus;
    public long[] qtys;
    public long[] prices;

    public Cmd() {}

    static Cmd of(int kind, String key, long ts) {
        Cmd c = new Cmd();
        c.kind = kind;
        c.key = key;
        c.ts = ts;
        return c;
    }
}
