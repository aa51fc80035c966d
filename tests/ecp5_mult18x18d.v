// Behavioural model of the ECP5 MULT18X18D for tests/test_dsp_registers.py: an 18x18
// multiplier (signed per SIGNEDA/SIGNEDB) with the optional input A, input B and output
// registers, each on CLK0 with the CE and RST selects its parameters name. Only what
// sparsehw.synth.dsp_registers uses is modelled: no pipeline register, no C input, no
// cascades, CLK1..3 unused. Synchronous reset to 0. With `define DSP_RESET_NEEDS_CE the reset
// acts only in cycles where the register's CE is high (the pessimistic reading of the DSP),
// otherwise it overrides CE as in a fabric TRELLIS_FF: the packing must be right under both.
module MULT18X18D(
    input A0, A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12, A13, A14, A15, A16, A17, B0, B1, B2, B3, B4, B5, B6, B7, B8, B9, B10, B11, B12, B13, B14, B15, B16, B17, C0, C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12, C13, C14, C15, C16, C17, SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK0, CLK1, CLK2, CLK3, CE0, CE1, CE2, CE3, RST0, RST1, RST2, RST3,
    output P0, P1, P2, P3, P4, P5, P6, P7, P8, P9, P10, P11, P12, P13, P14, P15, P16, P17, P18, P19, P20, P21, P22, P23, P24, P25, P26, P27, P28, P29, P30, P31, P32, P33, P34, P35
);
    parameter REG_INPUTA_CLK = "NONE";
    parameter REG_INPUTA_CE = "CE0";
    parameter REG_INPUTA_RST = "RST0";
    parameter REG_INPUTB_CLK = "NONE";
    parameter REG_INPUTB_CE = "CE0";
    parameter REG_INPUTB_RST = "RST0";
    parameter REG_INPUTC_CLK = "NONE";
    parameter REG_PIPELINE_CLK = "NONE";
    parameter REG_OUTPUT_CLK = "NONE";
    parameter REG_OUTPUT_CE = "CE0";
    parameter REG_OUTPUT_RST = "RST0";
    parameter RESETMODE = "SYNC";
    parameter GSR = "ENABLED";

    wire [3:0] ce = {CE3, CE2, CE1, CE0};
    wire [3:0] rst = {RST3, RST2, RST1, RST0};
    function sel(input [3:0] bits, input [8*4-1:0] name);
        sel = bits[name[7:0] - "0"];
    endfunction

    wire [17:0] a_in = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0};
    wire [17:0] b_in = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0};
    reg [17:0] a_r = 0, b_r = 0;
    reg [35:0] p_r = 0;
    wire [17:0] a = REG_INPUTA_CLK == "NONE" ? a_in : a_r;
    wire [17:0] b = REG_INPUTB_CLK == "NONE" ? b_in : b_r;
    wire signed [36:0] a_ext = {{19{SIGNEDA & a[17]}}, a};
    wire signed [36:0] b_ext = {{19{SIGNEDB & b[17]}}, b};
    wire [35:0] product = a_ext * b_ext;
    wire [35:0] p = REG_OUTPUT_CLK == "NONE" ? product : p_r;
    assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0} = p;

`ifdef DSP_RESET_NEEDS_CE
    `define DSP_REG(q, d, c, r) if (c) q <= r ? 0 : d;
`else
    `define DSP_REG(q, d, c, r) if (r) q <= 0; else if (c) q <= d;
`endif
    always @(posedge CLK0) begin
        `DSP_REG(a_r, a_in, sel(ce, REG_INPUTA_CE), sel(rst, REG_INPUTA_RST))
        `DSP_REG(b_r, b_in, sel(ce, REG_INPUTB_CE), sel(rst, REG_INPUTB_RST))
        `DSP_REG(p_r, product, sel(ce, REG_OUTPUT_CE), sel(rst, REG_OUTPUT_RST))
    end
endmodule
